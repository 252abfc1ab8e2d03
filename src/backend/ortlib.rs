//! Finding the ONNX Runtime shared library on disk.
//!
//! pa-onnx does not link ONNX Runtime: it loads the library that the
//! `onnxruntime` (or `onnxruntime-gpu`) Python wheel ships, so users install
//! it the way they already do and the binary builds without a C++ toolchain.
//! This module only finds files; loading them is `ort.rs`'s job. The order is
//! fixed and explained in [`super::ort_info`]; a location the user named
//! explicitly must exist, while guessed locations are skipped when empty.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A library file and how it was found.
#[derive(Debug, Clone)]
pub(super) struct Located {
    pub path: PathBuf,
    pub found_via: &'static str,
    /// The `site-packages` folder the library belongs to, when known; the
    /// CUDA libraries of the `nvidia-*` wheels live under it.
    pub site_packages: Option<PathBuf>,
}

/// Why the library was not found.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum NotFound {
    /// A folder the user named holds no library.
    #[error("no ONNX Runtime library in folder {} (from {via})", .path.display())]
    EmptyFolder { path: PathBuf, via: &'static str },
    /// A path the user named does not exist.
    #[error("ONNX Runtime library not found at {} (from {via})", .path.display())]
    Missing { path: PathBuf, via: &'static str },
    /// No guessed location had it; `tried` says what each one showed.
    #[error(
        "ONNX Runtime library not found ({}); install it with `pip install onnxruntime` \
         (or onnxruntime-gpu), or point ORT_DYLIB_PATH or --ort-lib at libonnxruntime",
        .tried.join("; ")
    )]
    Nowhere { tried: Vec<String> },
}

/// Why `python3` could not say where its onnxruntime package is.
#[derive(Debug, Clone, thiserror::Error)]
enum PythonProbe {
    #[error("python3 not runnable: {0}")]
    NotRunnable(String),
    #[error("python3 cannot import onnxruntime")]
    NoPackage,
    #[error("python3 printed no onnxruntime folder")]
    NoFolder,
}

/// Finds the library, or says everything that was tried.
pub(super) fn locate(explicit: Option<&Path>) -> Result<Located, NotFound> {
    if let Some(path) = explicit {
        return named(path, "--ort-lib");
    }
    if let Some(value) = std::env::var_os("ORT_DYLIB_PATH").filter(|v| !v.is_empty()) {
        return named(Path::new(&value), "ORT_DYLIB_PATH");
    }
    let mut tried = Vec::new();
    match python_package_dir() {
        Ok(pkg) => {
            if let Some(path) = library_in(&pkg.join("capi")) {
                return Ok(Located {
                    site_packages: pkg.parent().map(Path::to_path_buf),
                    path,
                    found_via: "python3",
                });
            }
            tried.push(format!(
                "python3's onnxruntime package at {} has no library in capi/",
                pkg.display()
            ));
        }
        Err(why) => tried.push(why.to_string()),
    }
    let mut roots = Vec::new();
    if let Ok(cwd) = std::env::current_dir() {
        roots.push(cwd);
    }
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    if manifest.is_dir() && !roots.contains(&manifest) {
        roots.push(manifest);
    }
    for root in roots {
        let venv_lib = root.join(".venv").join("lib");
        for site in python_site_dirs(&venv_lib) {
            if let Some(path) = library_in(&site.join("onnxruntime").join("capi")) {
                return Ok(Located {
                    path,
                    found_via: ".venv",
                    site_packages: Some(site),
                });
            }
        }
        tried.push(format!(
            "no onnxruntime in {}",
            root.join(".venv").display()
        ));
    }
    Err(NotFound::Nowhere { tried })
}

/// A location the user gave: it must exist. A folder is searched (also its
/// `capi/`), so the wheel's package folder is accepted too.
fn named(path: &Path, via: &'static str) -> Result<Located, NotFound> {
    let file = if path.is_dir() {
        library_in(path)
            .or_else(|| library_in(&path.join("capi")))
            .ok_or_else(|| NotFound::EmptyFolder {
                path: path.to_path_buf(),
                via,
            })?
    } else if path.is_file() {
        path.to_path_buf()
    } else {
        return Err(NotFound::Missing {
            path: path.to_path_buf(),
            via,
        });
    };
    // .../site-packages/onnxruntime/capi/libonnxruntime.so.X
    let site_packages = file
        .parent()
        .and_then(Path::parent)
        .and_then(Path::parent)
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n == "site-packages" || n == "dist-packages")
        })
        .map(Path::to_path_buf);
    Ok(Located {
        path: file,
        found_via: via,
        site_packages,
    })
}

/// Asks `python3` on `PATH` where its `onnxruntime` package is, once per
/// process (starting Python costs a fraction of a second).
fn python_package_dir() -> Result<PathBuf, PythonProbe> {
    static ANSWER: std::sync::OnceLock<Result<PathBuf, PythonProbe>> = std::sync::OnceLock::new();
    ANSWER.get_or_init(ask_python).clone()
}

fn ask_python() -> Result<PathBuf, PythonProbe> {
    let out = Command::new("python3")
        .args([
            "-c",
            "import onnxruntime, os; print(os.path.dirname(onnxruntime.__file__))",
        ])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .map_err(|e| PythonProbe::NotRunnable(e.to_string()))?;
    if !out.status.success() {
        return Err(PythonProbe::NoPackage);
    }
    let dir = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if dir.is_empty() {
        return Err(PythonProbe::NoFolder);
    }
    Ok(PathBuf::from(dir))
}

/// `lib/python3*/site-packages` folders under a venv's `lib`.
fn python_site_dirs(venv_lib: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(venv_lib) else {
        return Vec::new();
    };
    let mut dirs: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("python3"))
        .map(|e| e.path().join("site-packages"))
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs
}

/// The ONNX Runtime library in `dir`, preferring the fully versioned file
/// (`libonnxruntime.so.1.31.1`) that the wheel ships.
fn library_in(dir: &Path) -> Option<PathBuf> {
    let entries = std::fs::read_dir(dir).ok()?;
    let mut found: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.is_file()
                && p.file_name()
                    .is_some_and(|n| is_library_name(&n.to_string_lossy()))
        })
        .collect();
    // Longest name first: the versioned file over an unversioned link.
    found.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
    found.into_iter().next()
}

fn is_library_name(name: &str) -> bool {
    if cfg!(target_os = "windows") {
        name.eq_ignore_ascii_case("onnxruntime.dll")
    } else if cfg!(target_os = "macos") {
        name.starts_with("libonnxruntime.") && name.ends_with(".dylib")
    } else {
        name == "libonnxruntime.so" || name.starts_with("libonnxruntime.so.")
    }
}

/// The CUDA and cuDNN libraries of the `nvidia-*` wheels next to onnxruntime
/// (`site-packages/nvidia/<part>/lib/`, or `nvidia/<cuXX>/lib/`), limited to
/// the families the CUDA execution provider links against.
#[cfg(feature = "cuda")]
pub(super) fn nvidia_wheel_libraries(site_packages: &Path) -> Vec<PathBuf> {
    const FAMILIES: &[&str] = &[
        "libcudart.so",
        "libcublasLt.so",
        "libcublas.so",
        "libcudnn",
        "libcurand.so",
        "libcufft.so",
        "libnvrtc.so",
        "libnvrtc-builtins.so",
        "libnvJitLink.so",
        "libcusparse.so",
    ];
    let mut libs = Vec::new();
    let Ok(parts) = std::fs::read_dir(site_packages.join("nvidia")) else {
        return libs;
    };
    for part in parts.filter_map(Result::ok) {
        let Ok(files) = std::fs::read_dir(part.path().join("lib")) else {
            continue;
        };
        for file in files.filter_map(Result::ok) {
            let name = file.file_name().to_string_lossy().into_owned();
            if name.contains(".so") && FAMILIES.iter().any(|f| name.starts_with(f)) {
                libs.push(file.path());
            }
        }
    }
    libs.sort();
    libs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn library_names() {
        if cfg!(target_os = "linux") {
            assert!(is_library_name("libonnxruntime.so.1.31.1"));
            assert!(is_library_name("libonnxruntime.so"));
            assert!(!is_library_name("libonnxruntime_providers_shared.so"));
            assert!(!is_library_name("libonnxruntime_providers_cuda.so"));
        }
    }

    #[test]
    fn explicit_path_must_exist() {
        let err = named(Path::new("/nonexistent/libonnxruntime.so.9"), "--ort-lib")
            .unwrap_err()
            .to_string();
        assert!(err.contains("/nonexistent/libonnxruntime.so.9"), "{err}");
        assert!(err.contains("--ort-lib"), "{err}");
    }

    #[test]
    fn folder_is_searched_and_site_packages_inferred() {
        let tmp = tempfile::tempdir().unwrap();
        let capi = tmp
            .path()
            .join("site-packages")
            .join("onnxruntime")
            .join("capi");
        std::fs::create_dir_all(&capi).unwrap();
        std::fs::write(capi.join("libonnxruntime.so.1.31.1"), b"").unwrap();
        std::fs::write(capi.join("libonnxruntime_providers_shared.so"), b"").unwrap();
        if cfg!(target_os = "linux") {
            let found = named(capi.parent().unwrap(), "--ort-lib").unwrap();
            assert_eq!(found.path, capi.join("libonnxruntime.so.1.31.1"));
            assert_eq!(
                found.site_packages.as_deref(),
                Some(tmp.path().join("site-packages").as_path())
            );
        }
    }
}
