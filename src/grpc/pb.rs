//! The generated `jobq.v1` protobuf types and gRPC service.

#![allow(missing_docs)]

tonic::include_proto!("jobq.v1");

/// The encoded descriptors of `jobq.v1`, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("jobq_descriptor");

/// The load generator's echo baseline (`jobq.bench.v1`); not served by jobq.
pub mod bench {
    #![allow(missing_docs)]
    tonic::include_proto!("jobq.bench.v1");
}
