//! A holder of a node-CA certificate that is not a member, against a 3-node `kes-cluster dev`
//! cluster of real node processes, over real mTLS (issue 7, "Only members speak Raft").
//!
//! The attack that worked before: ask for a join on the KES port with the node certificate and
//! the address of a gRPC server of one's own; keep the cluster-key copies the leader's
//! challenge carries; replay them to every member in a challenge naming only oneself; then
//! speak Raft, Forward and Admin as a "member" and delete the admin's key everywhere.

use jepsen_lite::{Cluster, serial};
use kes_cluster::pki::{CertificateAuthority, LeafRequest};
use kes_cluster::{Client, ClientConfig, Method};
use kes_cluster_proto::cluster_server::{Cluster as ClusterRpc, ClusterServer};
use kes_cluster_proto::*;
use kes_node::cluster::transport::{NodeTls, PeerChannels, serve_grpc};
use kes_node::cluster::{AdminOp, Backup};
use kes_node::config::ClusterTlsConfig;
use kes_node::raft::{TypeConfig, encode};
use kes_node::seal::WrappedCopy;
use kes_node::state::{ClusterMeta, Command, DEFAULT_ENCLAVE, Op, State};
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use openraft::{SnapshotMeta, Vote};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tonic::{Code, Request, Response, Status};

/// A node certificate from the cluster's own node CA, for a node that is not a member.
fn issue_node_certificate(c: &Cluster, name: &str) -> (PathBuf, PathBuf) {
    let d = c.dir.path();
    let ca_cert = std::fs::read_to_string(d.join("ca.crt")).expect("ca.crt");
    let ca_key = std::fs::read_to_string(d.join("ca.key")).expect("ca.key");
    let ca = CertificateAuthority::load(&ca_cert, &ca_key).expect("CA");
    let request = LeafRequest {
        common_name: name.into(),
        dns: vec!["localhost".into()],
        ips: vec![std::net::Ipv4Addr::LOCALHOST.into()],
        client_auth: true,
    };
    let issued = ca.issue(&request, None).expect("issue");
    let (cert, key) = (d.join(format!("{name}.crt")), d.join(format!("{name}.key")));
    std::fs::write(&cert, issued.cert_pem).expect("write cert");
    std::fs::write(&key, issued.key_pem).expect("write key");
    (cert, key)
}

/// The challenges the attacker's own gRPC server was sent.
#[derive(Clone, Default)]
struct Trap(Arc<Mutex<Vec<ChallengeRequest>>>);

#[tonic::async_trait]
impl ClusterRpc for Trap {
    async fn append_entries(&self, _: Request<RaftRequest>) -> Result<Response<RaftReply>, Status> {
        Err(Status::unimplemented("trap"))
    }
    async fn vote(&self, _: Request<RaftRequest>) -> Result<Response<RaftReply>, Status> {
        Err(Status::unimplemented("trap"))
    }
    async fn install_snapshot(
        &self,
        _: Request<RaftRequest>,
    ) -> Result<Response<RaftReply>, Status> {
        Err(Status::unimplemented("trap"))
    }
    async fn pre_vote(&self, _: Request<PreVoteRequest>) -> Result<Response<PreVoteReply>, Status> {
        Err(Status::unimplemented("trap"))
    }
    async fn forward(&self, _: Request<ForwardRequest>) -> Result<Response<ForwardReply>, Status> {
        Err(Status::unimplemented("trap"))
    }
    async fn read_index(
        &self,
        _: Request<ReadIndexRequest>,
    ) -> Result<Response<ReadIndexReply>, Status> {
        Err(Status::unimplemented("trap"))
    }
    async fn join(&self, _: Request<JoinRequest>) -> Result<Response<JoinReply>, Status> {
        Err(Status::unimplemented("trap"))
    }
    async fn join_challenge(
        &self,
        req: Request<ChallengeRequest>,
    ) -> Result<Response<ChallengeReply>, Status> {
        self.0.lock().unwrap().push(req.into_inner());
        Err(Status::unavailable(
            "the attacker keeps the copies and answers nothing",
        ))
    }
    async fn admin(&self, _: Request<AdminRequest>) -> Result<Response<AdminReply>, Status> {
        Err(Status::unimplemented("trap"))
    }
    async fn status(&self, _: Request<StatusRequest>) -> Result<Response<StatusReply>, Status> {
        Err(Status::unimplemented("trap"))
    }
    async fn confirm_member(
        &self,
        _: Request<ConfirmMemberRequest>,
    ) -> Result<Response<ConfirmMemberReply>, Status> {
        Err(Status::unimplemented("trap"))
    }
}

/// The attacker: a node certificate, a gRPC server of its own, and a client to the members.
struct Attacker {
    spki: String,
    cert: PathBuf,
    key: PathBuf,
    grpc: String,
    channels: PeerChannels,
    trap: Trap,
}

impl Attacker {
    async fn start(c: &Cluster) -> Attacker {
        let (cert, key) = issue_node_certificate(c, "intruder");
        let tls = node_tls(c, cert.clone(), key.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let grpc = listener.local_addr().unwrap().to_string();
        let trap = Trap::default();
        let router =
            tonic::transport::Server::builder().add_service(ClusterServer::new(trap.clone()));
        let server_tls = tls.clone();
        tokio::spawn(serve_grpc(
            listener,
            server_tls,
            router,
            std::future::pending(),
        ));
        Attacker {
            spki: tls.spki.clone(),
            cert,
            key,
            grpc,
            channels: PeerChannels::new(Some(tls)),
            trap,
        }
    }

    /// A gRPC client to member `i`, pinned to that member's real certificate.
    fn client(
        &self,
        c: &Cluster,
        i: usize,
    ) -> cluster_client::ClusterClient<tonic::transport::Channel> {
        self.channels
            .client(&grpc_addr(c, i), &member_spki(c, i))
            .expect("client")
    }
}

/// Node TLS from a certificate of the cluster's node CA.
fn node_tls(c: &Cluster, cert: PathBuf, key: PathBuf) -> NodeTls {
    NodeTls::load(&ClusterTlsConfig {
        cert: Some(cert),
        key: Some(key),
        ca: Some(c.dir.path().join("ca.crt")),
    })
    .expect("a valid node certificate")
}

fn grpc_addr(c: &Cluster, i: usize) -> String {
    format!("127.0.0.1:{}", c.base + 100 + i as u16)
}

fn member_spki(c: &Cluster, i: usize) -> String {
    let pem = std::fs::read(c.nodes[i].dir.join("node.crt")).expect("node.crt");
    kes_cluster::identity_of_cert_pem(&pem).expect("SPKI")
}

fn admin_identity(c: &Cluster) -> String {
    let pem = std::fs::read(c.dir.path().join("admin.crt")).expect("admin.crt");
    kes_cluster::identity_of_cert_pem(&pem).expect("admin identity")
}

/// Every membership-checked RPC, as an attacker would fill it: high-term votes and appends, a
/// snapshot chunk far past its start, a Forward of DeleteKey in the admin's name, an Admin
/// remove of a member. Each answer's code, by RPC name.
async fn try_every_peer_rpc(
    c: &Cluster,
    a: &Attacker,
    i: usize,
    cluster_id: &str,
) -> Vec<(&'static str, Code)> {
    let mut client = a.client(c, i);
    let cid = cluster_id.to_owned();
    let vote = Vote::new(1_000_000, 99);
    let raft = |payload: Vec<u8>| RaftRequest {
        cluster_id: cid.clone(),
        payload,
    };
    let append = AppendEntriesRequest::<TypeConfig> {
        vote,
        prev_log_id: None,
        entries: vec![],
        leader_commit: None,
    };
    let snapshot = InstallSnapshotRequest::<TypeConfig> {
        vote,
        meta: SnapshotMeta {
            last_log_id: None,
            last_membership: Default::default(),
            snapshot_id: "intruder".into(),
        },
        offset: 1 << 40,
        data: vec![0; 16],
        done: false,
    };
    let delete = Command {
        request_id: 0x1234,
        identity: admin_identity(c),
        path: "/v1/key/delete/crown-jewel".into(),
        enclave: DEFAULT_ENCLAVE.into(),
        time: 1,
        op: Op::DeleteKey {
            name: "crown-jewel".into(),
        },
        restores_seen: None,
    };
    let code = |r: Result<(), Status>| r.err().map(|s| s.code()).unwrap_or(Code::Ok);
    vec![
        (
            "AppendEntries",
            code(client.append_entries(raft(encode(&append))).await.map(drop)),
        ),
        (
            "Vote",
            code(
                client
                    .vote(raft(encode(&VoteRequest::new(vote, None))))
                    .await
                    .map(drop),
            ),
        ),
        (
            "InstallSnapshot",
            code(
                client
                    .install_snapshot(raft(encode(&snapshot)))
                    .await
                    .map(drop),
            ),
        ),
        (
            "Forward",
            code(
                client
                    .forward(ForwardRequest {
                        cluster_id: cid.clone(),
                        command: encode(&delete),
                    })
                    .await
                    .map(drop),
            ),
        ),
        (
            "Admin",
            code(
                client
                    .admin(AdminRequest {
                        cluster_id: cid.clone(),
                        op: encode(&AdminOp::Remove { node_id: 1 }),
                    })
                    .await
                    .map(drop),
            ),
        ),
        (
            "Status",
            code(
                client
                    .status(StatusRequest {
                        cluster_id: cid.clone(),
                    })
                    .await
                    .map(drop),
            ),
        ),
        (
            "ReadIndex",
            code(
                client
                    .read_index(ReadIndexRequest {
                        cluster_id: cid.clone(),
                    })
                    .await
                    .map(drop),
            ),
        ),
        (
            "PreVote",
            code(
                client
                    .pre_vote(PreVoteRequest {
                        cluster_id: cid.clone(),
                        term: 1 << 40,
                        ..Default::default()
                    })
                    .await
                    .map(drop),
            ),
        ),
        (
            "ConfirmMember",
            code(
                client
                    .confirm_member(ConfirmMemberRequest {
                        cluster_id: cid.clone(),
                        spki: a.spki.clone(),
                    })
                    .await
                    .map(drop),
            ),
        ),
        (
            "Join",
            code(
                client
                    .join(JoinRequest {
                        cluster_id: cid.clone(),
                        node_id: 99,
                        http_addr: "https://127.0.0.1:1".into(),
                        grpc_addr: a.grpc.clone(),
                        spki: a.spki.clone(),
                        join_nonce: vec![7; 32],
                    })
                    .await
                    .map(drop),
            ),
        ),
    ]
}

async fn assert_every_peer_rpc_refused(c: &Cluster, a: &Attacker, cluster_id: &str, when: &str) {
    for i in 0..3 {
        let answers = try_every_peer_rpc(c, a, i, cluster_id).await;
        let passed: Vec<_> = answers
            .iter()
            .filter(|(_, code)| *code != Code::PermissionDenied)
            .collect();
        assert!(
            passed.is_empty(),
            "{when}: node{} let a non-member through: {passed:?}\n{}",
            i + 1,
            c.logs()
        );
    }
}

/// `POST /v1/cluster/join-request` with `body`.
async fn ask_to_join(kes: &Client, body: &serde_json::Value) -> kes_cluster::Response {
    kes.request(
        Method::POST,
        "/v1/cluster/join-request",
        &[],
        body.to_string(),
    )
    .await
    .expect("the member answers")
}

/// The cluster key's copies, from an admin snapshot.
async fn cluster_meta(c: &Cluster) -> ClusterMeta {
    let r = c
        .call(0, Method::GET, "/v1/cluster/snapshot", "")
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let backup = Backup::parse(&r.body).expect("snapshot");
    let trees = State::parse_dump(&backup.dump).expect("dump");
    trees
        .iter()
        .find(|(t, _)| t == "meta")
        .and_then(|(_, items)| items.iter().find(|(k, _)| k.as_slice() == b"cluster"))
        .and_then(|(_, v)| rmp_serde::from_slice(v).ok())
        .expect("cluster record")
}

async fn assert_intact(c: &Cluster) {
    for i in 0..3 {
        let r = c
            .call(i, Method::GET, "/v1/key/describe/crown-jewel", "")
            .await
            .unwrap();
        assert_eq!(
            r.status,
            200,
            "node{}: the admin's key is gone: {}",
            i + 1,
            r.text()
        );
    }
    let st: serde_json::Value = c
        .call(0, Method::GET, "/v1/cluster/status", "")
        .await
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(st["nodes"].as_array().unwrap().len(), 3, "{st}");
    let r = c
        .call(0, Method::POST, "/v1/key/create/after-the-attack", "")
        .await
        .unwrap();
    assert_eq!(
        r.status,
        200,
        "the cluster still takes writes: {}",
        r.text()
    );
}

/// Before: the leader sent the stranger the cluster key's wrapped copies; every member took
/// the replayed challenge and kept a ticket for the stranger forever; then Forward, Admin,
/// Vote, AppendEntries and InstallSnapshot passed, and a Forwarded DeleteKey in the admin's
/// name deleted the admin's key on every node.
/// After: the challenge carries a one-time key, never the cluster key's copies; every member
/// refuses the replayed challenge; every peer RPC stays refused; the key is still everywhere.
#[tokio::test]
async fn a_non_member_with_a_node_certificate_never_speaks_raft() {
    let _g = serial().await;
    let c = Cluster::start(3, "").await;
    let r = c
        .call(0, Method::POST, "/v1/key/create/crown-jewel", "")
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let cluster_id = c.status(0).await.unwrap()["cluster_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let a = Attacker::start(&c).await;

    // 1. Before anything: refused everywhere.
    assert_every_peer_rpc_refused(&c, &a, &cluster_id, "before the join request").await;

    // 2. A join request on the KES port with the node certificate and the trap's address.
    let kes = Client::new(&ClientConfig {
        server: c.nodes[1].url.clone(),
        cert: Some(a.cert.clone()),
        key: Some(a.key.clone()),
        ca: Some(c.dir.path().join("ca.crt")),
        insecure: false,
    })
    .unwrap()
    .with_timeout(Duration::from_secs(60));
    let mut body = serde_json::json!({
        "node_id": 99,
        "http": "https://127.0.0.1:1",
        "grpc": a.grpc,
    });
    // The request exactly as the old joiner sent it: without a nonce of its own it gets no
    // challenge at all.
    let r = ask_to_join(&kes, &body).await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(
        a.trap.0.lock().unwrap().is_empty(),
        "challenged without a nonce"
    );
    // With a nonce, as a joiner sends it now: the leader challenges the requester.
    body["nonce"] = hex::encode([5u8; 32]).into();
    let r = ask_to_join(&kes, &body).await;
    assert_ne!(r.status, 200, "the stranger is not admitted: {}", r.text());
    let challenges = a.trap.0.lock().unwrap().clone();
    assert_eq!(
        challenges.len(),
        1,
        "the leader challenged the requester: {}",
        r.text()
    );
    assert_eq!(
        challenges[0].join_nonce, [5u8; 32],
        "the requester's own nonce"
    );

    // The stranger got nothing of the cluster key: no copy it holds is one of the cluster's.
    let meta = cluster_meta(&c).await;
    for ch in &challenges {
        let copies: Vec<WrappedCopy> = rmp_serde::from_slice(&ch.wrapped_keys).unwrap_or_default();
        for copy in copies {
            assert!(
                meta.wrapped.iter().all(|m| m.bytes != copy.bytes),
                "a stranger was handed a wrapped copy of the cluster key"
            );
        }
    }

    // 3. Replay whatever it got to every member, naming only itself.
    for i in 0..3 {
        // The cluster key's real copies (as the old leader handed them out), then whatever
        // the leader's challenge carried.
        let real_copies = ChallengeRequest {
            cluster_id: cluster_id.clone(),
            wrapped_keys: encode(&meta.wrapped),
            nonce: vec![1; 32],
            member_spkis: vec![],
            join_nonce: vec![5; 32],
        };
        for ch in [real_copies].into_iter().chain(challenges.iter().cloned()) {
            let replay = ChallengeRequest {
                member_spkis: vec![a.spki.clone()],
                ..ch
            };
            let answer = a.client(&c, i).join_challenge(replay).await;
            let proof = answer
                .as_ref()
                .map(|r| r.get_ref().proof.clone())
                .unwrap_or_default();
            assert!(
                proof.is_empty(),
                "member node{} answered a replayed challenge: {answer:?}",
                i + 1
            );
        }
    }

    // 4. Still refused everywhere, and the cluster is intact.
    assert_every_peer_rpc_refused(&c, &a, &cluster_id, "after the challenge replay").await;
    assert_intact(&c).await;

    // Every refusal is logged with the caller's SPKI.
    let logs: String = c.nodes.iter().map(|n| n.log()).collect();
    for refusal in [
        "refused Forward from SPKI",
        "refused AppendEntries from SPKI",
        "refused a join challenge from SPKI",
    ] {
        assert!(
            logs.contains(&format!("{refusal} {}", a.spki)),
            "no warning: {refusal} <the intruder's SPKI>"
        );
    }
}

/// Even a member is held to the basics: a request naming no cluster, or another cluster, is
/// refused, and a snapshot chunk far past the bytes received is refused before openraft's
/// buffer would grow to it. (Before: an empty cluster id was taken as "any cluster", and the
/// chunk went straight to openraft.)
#[tokio::test]
async fn a_member_is_held_to_its_cluster_id_and_to_the_snapshot_bounds() {
    let _g = serial().await;
    let c = Cluster::start(3, "").await;
    let cluster_id = c.status(0).await.unwrap()["cluster_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let member = node_tls(
        &c,
        c.nodes[1].dir.join("node.crt"),
        c.nodes[1].dir.join("node.key"),
    );
    let channels = PeerChannels::new(Some(member));
    let mut node1 = channels
        .client(&grpc_addr(&c, 0), &member_spki(&c, 0))
        .unwrap();
    let status = |id: &str| StatusRequest {
        cluster_id: id.to_owned(),
    };
    node1
        .status(status(&cluster_id))
        .await
        .expect("a member asks for status");
    let empty = node1.status(status("")).await.unwrap_err();
    assert_eq!(empty.code(), Code::InvalidArgument, "{empty:?}");
    let other = node1.status(status("another-cluster")).await.unwrap_err();
    assert_eq!(other.code(), Code::PermissionDenied, "{other:?}");

    let chunk = InstallSnapshotRequest::<TypeConfig> {
        vote: Vote::new(0, 0),
        meta: SnapshotMeta {
            last_log_id: None,
            last_membership: Default::default(),
            snapshot_id: "far".into(),
        },
        offset: 1 << 40,
        data: vec![0; 16],
        done: false,
    };
    let far = node1
        .install_snapshot(RaftRequest {
            cluster_id: cluster_id.clone(),
            payload: encode(&chunk),
        })
        .await
        .unwrap_err();
    assert_eq!(far.code(), Code::InvalidArgument, "{far:?}");
    assert!(far.message().contains("past the"), "{far:?}");
    let r = c
        .call(0, Method::POST, "/v1/key/create/still-fine", "")
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
}
