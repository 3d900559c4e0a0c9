fn main() -> Result<(), Box<dyn std::error::Error>> {
    // protoc comes from the vendored crate: nothing to install on the machine.
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    std::env::set_var("PROTOC", protoc);
    let include = protoc_bin_vendored::include_path()?;
    let include = include.to_str().ok_or("non-UTF-8 protoc include path")?;
    println!("cargo:rerun-if-changed=../proto/istio-ca.proto");
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_protos(&["../proto/istio-ca.proto"], &["../proto", include])?;
    Ok(())
}
