//! The inter-node gRPC service of kes-cluster (`cluster.proto`), as tonic/prost code.
#![allow(missing_docs, unreachable_pub, clippy::all)] // generated code

tonic::include_proto!("kescluster.v1");
