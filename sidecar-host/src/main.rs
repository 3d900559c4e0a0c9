use clap::Parser;

fn main() {
    let cli = sidecar_host::cli::Cli::parse();
    match sidecar_host::cli::run(cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("svidgate: {e:#}");
            std::process::exit(2);
        }
    }
}
