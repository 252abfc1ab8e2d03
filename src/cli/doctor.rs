//! `pa-onnx doctor`: which inference backends this build and machine offer.

use std::path::PathBuf;

use pa_onnx::backend::{self, BackendOptions};
use serde::Serialize;

use super::{Printer, Status};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The ONNX Runtime shared library to try.
    #[arg(long, value_name = "PATH")]
    ort_lib: Option<PathBuf>,
    /// Print a JSON object.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct Json {
    pa_onnx_version: &'static str,
    tract: Availability,
    ort: Availability,
    #[serde(skip_serializing_if = "Option::is_none")]
    ort_library: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ort_found_via: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ort_version: Option<String>,
    ort_providers: Vec<String>,
    cuda_feature: bool,
}

#[derive(Serialize)]
struct Availability {
    available: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

pub fn run(args: Args, p: &Printer) -> pa_onnx::Result<Status> {
    let opts = BackendOptions {
        ort_lib: args.ort_lib,
        ..Default::default()
    };
    let tract = Availability {
        available: cfg!(feature = "tract"),
        reason: (!cfg!(feature = "tract")).then(|| "built without the `tract` feature".to_string()),
    };
    let mut json = Json {
        pa_onnx_version: env!("CARGO_PKG_VERSION"),
        tract,
        ort: Availability {
            available: false,
            reason: None,
        },
        ort_library: None,
        ort_found_via: None,
        ort_version: None,
        ort_providers: Vec::new(),
        cuda_feature: cfg!(feature = "cuda"),
    };
    match backend::ort_info(&opts) {
        Ok(info) => {
            json.ort.available = true;
            json.ort_library = Some(info.library.display().to_string());
            json.ort_found_via = Some(info.found_via);
            json.ort_version = Some(info.version);
            json.ort_providers = info.providers;
        }
        Err(e) => json.ort.reason = Some(e.reason().to_string()),
    }
    if args.json {
        p.json(&json);
        return Ok(Status::Ok);
    }
    let line = |name: &str, a: &Availability| match &a.reason {
        None => format!("{name:<8} available"),
        Some(r) => format!("{name:<8} unavailable: {r}"),
    };
    p.out(&format!("pa-onnx {}", json.pa_onnx_version));
    p.out(&line("tract", &json.tract));
    p.out(&line("ort", &json.ort));
    if let (Some(lib), Some(via), Some(v)) =
        (&json.ort_library, &json.ort_found_via, &json.ort_version)
    {
        p.out(&format!("  library:   {lib} (found via {via})"));
        p.out(&format!("  version:   {v}"));
        p.out(&format!("  providers: {}", json.ort_providers.join(", ")));
    }
    let cuda = if !json.cuda_feature {
        "unavailable: built without the `cuda` feature".to_string()
    } else if json
        .ort_providers
        .iter()
        .any(|p| p == "CUDAExecutionProvider")
    {
        "offered by the ONNX Runtime library (a verify run shows whether it really executes)"
            .to_string()
    } else {
        "unavailable: the ONNX Runtime library offers no CUDAExecutionProvider".to_string()
    };
    p.out(&format!("ort-cuda {cuda}"));
    Ok(Status::Ok)
}
