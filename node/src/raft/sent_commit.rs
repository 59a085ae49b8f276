//! The highest commit index this node, as leader, has told any follower.
//!
//! A follower applies every entry up to the commit index its leader sends it, and may answer
//! from that state before the leader has applied the same entries itself (the leader applies
//! after it commits, and an apply can be slow). A read index that any node hands out, or
//! waits for, must therefore cover this index; the leader's last lease confirmation and its
//! own applied index may both be older. It is recorded before the AppendEntries leaves, so no
//! follower can know of a commit index above it.

/// Shared by the Raft network (which records, before each AppendEntries leaves) and the read
/// path (which reads).
pub type SentCommit = super::SharedIndex;
