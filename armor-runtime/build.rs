//! Generates the containerd client, and the server and client of armor's telemetry feed and
//! health service, from armor's own `.proto` files (`proto/`) with protox, a protobuf
//! compiler written in Rust: building armor needs no system `protoc`.

use std::error::Error;

/// The files, relative to `proto/`.
const PROTOS: &[&str] = &[
    "containerd/containers.proto",
    "containerd/namespaces.proto",
    "containerd/task_types.proto",
    "containerd/tasks.proto",
    "containerd/envelope.proto",
    "containerd/events.proto",
    "containerd/lifecycle.proto",
];

/// The services armor serves (its telemetry feed, KubeArmor's wire format, and gRPC's health
/// service): server and client code.
const SERVED: &[&str] = &["feeder/feeder.proto", "grpc/health.proto"];

fn main() -> Result<(), Box<dyn Error>> {
    println!("cargo:rerun-if-changed=proto");
    let files: Vec<String> = PROTOS.iter().map(|p| format!("proto/{p}")).collect();
    let fds = protox::compile(&files, ["proto"])?;
    tonic_prost_build::configure()
        .build_server(false)
        .compile_fds(fds)?;
    let files: Vec<String> = SERVED.iter().map(|p| format!("proto/{p}")).collect();
    let fds = protox::compile(&files, ["proto"])?;
    tonic_prost_build::configure().compile_fds(fds)?;
    Ok(())
}
