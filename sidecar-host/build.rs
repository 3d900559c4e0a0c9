fn main() -> Result<(), Box<dyn std::error::Error>> {
    // protoc comes from the vendored crate: nothing to install on the machine.
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    std::env::set_var("PROTOC", protoc);
    let include = protoc_bin_vendored::include_path()?;
    let include = include.to_str().ok_or("non-UTF-8 protoc include path")?;
    let protos = ["../proto/istio-ca.proto", "../proto/workload.proto"];
    for p in protos {
        println!("cargo:rerun-if-changed={p}");
    }
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        // Ordered maps: a Workload API message encodes the same way every time, so a stream
        // can tell a real change from a repeat.
        .btree_map(".")
        .compile_protos(&protos, &["../proto", include])?;
    Ok(())
}
