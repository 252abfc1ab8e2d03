//! One backend's verdict: load both models, feed them the same inputs, and
//! check what comes out.
//!
//! The order of the checks decides what a problem means: the original
//! failing to load or run says the backend cannot handle this model (a
//! skip), while the candidate failing where the original succeeds says the
//! rewiring broke something (a failure). Every failed check is collected,
//! not only the first, so one report lists all that is wrong.

use std::path::Path;

use super::inputs::make_inputs;
use super::options::InferenceOptions;
use super::report::{BackendReport, InferenceReport, OutputReport};
use super::tolerance::compare;
use crate::backend::{
    self, BackendError, BackendKind, BackendOptions, HostTensor, IoSpec, Session,
};
use crate::stats::std_dev;

/// Outputs of both models on the reference backend.
pub(super) struct Reference {
    pub(super) kind: BackendKind,
    pub(super) original: Outputs,
    pub(super) candidate: Outputs,
}

/// Named tensors, in the model's order of inputs or outputs.
pub(super) type Outputs = Vec<(String, HostTensor)>;

/// One backend: load, run, check. Returns the outputs when both models ran.
#[allow(clippy::too_many_arguments)]
pub(super) fn check_backend(
    kind: BackendKind,
    required: bool,
    original: &Path,
    candidate: &Path,
    opts: &InferenceOptions,
    backend_opts: &BackendOptions,
    user_inputs: Option<&[(String, HostTensor)]>,
    feed: &mut Option<Outputs>,
    report: &mut InferenceReport,
    reference: Option<&Reference>,
) -> (BackendReport, Option<(Outputs, Outputs)>) {
    let br = BackendReport::new(kind, required);
    let mut orig_session = match backend::open(kind, original, backend_opts) {
        Ok(s) => s,
        Err(e @ BackendError::Unavailable { .. }) => {
            return (br.skip(e.reason().to_string()), None)
        }
        Err(e) => {
            return (
                br.skip(format!("cannot load the original: {}", e.reason())),
                None,
            )
        }
    };
    let mut cand_session = match backend::open(kind, candidate, backend_opts) {
        Ok(s) => s,
        Err(e @ BackendError::Unavailable { .. }) => {
            return (br.skip(e.reason().to_string()), None)
        }
        Err(e) => {
            return (
                br.fail(format!(
                    "the candidate does not load although the original does: {}",
                    e.reason()
                )),
                None,
            )
        }
    };
    let mut br = br;
    br.provider_used = Some(orig_session.provider_used().to_string());

    if let Some(diff) = io_difference("input", orig_session.inputs(), cand_session.inputs()) {
        return (br.fail(diff), None);
    }

    if feed.is_none() {
        match make_inputs(
            orig_session.inputs(),
            user_inputs,
            &backend_opts.input_shapes,
            opts.seed,
        ) {
            Ok((inputs, summaries)) => {
                report.inputs = summaries;
                *feed = Some(inputs);
            }
            Err(e) => {
                report.error = Some(e.to_string());
                return (br, None);
            }
        }
    }
    let inputs = feed.as_deref().unwrap_or_default();

    let orig_out = match run(&mut *orig_session, inputs) {
        Ok(o) => o,
        Err(e) => {
            return (
                br.skip(format!("cannot run the original: {}", e.reason())),
                None,
            )
        }
    };
    let cand_out = match run(&mut *cand_session, inputs) {
        Ok(o) => o,
        Err(e) => {
            return (
                br.fail(format!(
                    "the candidate fails to run although the original runs: {}",
                    e.reason()
                )),
                None,
            )
        }
    };

    let mut any_changed = false;
    for (ix, (name, o)) in orig_out.iter().enumerate() {
        let Some((_, c)) = cand_out.iter().find(|(n, _)| n == name) else {
            br.failures
                .push(format!("output `{name}` is missing from the candidate"));
            continue;
        };
        if ix < cand_out.len() && &cand_out[ix].0 != name {
            br.failures.push(format!(
                "output `{name}` moved to another position in the candidate"
            ));
        }
        if o.shape != c.shape || o.dtype() != c.dtype() {
            br.failures.push(format!(
                "output `{name}`: original is {} {:?}, candidate is {} {:?}",
                o.dtype(),
                o.shape,
                c.dtype(),
                c.shape
            ));
            continue;
        }
        let (atol, rtol) = opts.tolerance(name);
        let ov = o.to_f64();
        let cv = c.to_f64();
        let bad_orig = ov.iter().filter(|x| !x.is_finite()).count();
        let bad_cand = cv.iter().filter(|x| !x.is_finite()).count();
        if bad_cand > 0 {
            br.failures.push(format!(
                "output `{name}`: {bad_cand} non-finite values in the candidate"
            ));
        }
        if bad_orig > 0 {
            br.failures.push(format!(
                "output `{name}`: the original itself gives {bad_orig} non-finite values, so the comparison means nothing"
            ));
        }
        let diff = compare(&cv, &ov, atol, rtol);
        any_changed |= diff.violations > 0;
        let mut out = OutputReport {
            name: name.clone(),
            shape: c.shape.clone(),
            dtype: c.dtype().to_string(),
            max_abs_err: None,
            max_rel_err: None,
            original_max_abs_err: None,
            // Non-finite values are reported above; the spread is of the rest.
            std_original: std_dev(&finite(&ov)),
            std_candidate: std_dev(&finite(&cv)),
            max_abs_change: diff.max_abs,
            changed: diff.violations > 0,
            atol,
            rtol,
        };
        if let Some(reference) = reference {
            let ref_c = reference
                .candidate
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, t)| t);
            let ref_o = reference
                .original
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, t)| t);
            match ref_c {
                None => br.failures.push(format!(
                    "output `{name}` is missing on the reference {}",
                    reference.kind
                )),
                Some(r) if r.shape != c.shape || r.dtype() != c.dtype() => {
                    br.failures.push(format!(
                        "output `{name}`: {} gives {} {:?}, the reference {} gives {} {:?}",
                        kind,
                        c.dtype(),
                        c.shape,
                        reference.kind,
                        r.dtype(),
                        r.shape
                    ))
                }
                Some(r) => {
                    let d = compare(&cv, &r.to_f64(), atol, rtol);
                    out.max_abs_err = Some(d.max_abs);
                    out.max_rel_err = Some(d.max_rel);
                    if d.violations > 0 {
                        br.failures.push(format!(
                            "output `{name}`: {kind} disagrees with {} on the candidate at {} of {} values \
                             (max abs err {:.3e}, max rel err {:.3e}; tolerance {atol:e} + {rtol:e}*|ref|)",
                            reference.kind,
                            d.violations,
                            cv.len(),
                            d.max_abs,
                            d.max_rel
                        ));
                    }
                    if let Some(ro) = ref_o.filter(|ro| ro.shape == o.shape) {
                        out.original_max_abs_err =
                            Some(compare(&ov, &ro.to_f64(), atol, rtol).max_abs);
                    }
                }
            }
        }
        br.outputs.push(out);
    }
    for (name, _) in &cand_out {
        if !orig_out.iter().any(|(n, _)| n == name) {
            br.failures
                .push(format!("the candidate has an extra output `{name}`"));
        }
    }
    if opts.expect_change && !any_changed && !orig_out.is_empty() {
        br.failures.push(
            "no output of the candidate differs from the original beyond tolerance: the rewiring changed nothing \
             that the outputs can see"
                .to_string(),
        );
    }
    (br.finish(), Some((orig_out, cand_out)))
}

fn run(
    session: &mut dyn Session,
    inputs: &[(String, HostTensor)],
) -> Result<Outputs, BackendError> {
    session.run(inputs)
}

/// Describes how two models' inputs differ, if they do.
fn io_difference(what: &str, a: &[IoSpec], b: &[IoSpec]) -> Option<String> {
    let describe = |specs: &[IoSpec]| {
        specs
            .iter()
            .map(|s| format!("{} {} {}", s.name, s.dtype, backend::format_spec_shape(s)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let same = a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| x.name == y.name && x.dtype == y.dtype && x.shape == y.shape);
    (!same).then(|| {
        format!(
            "the candidate's {what}s differ from the original's: ({}) vs ({})",
            describe(a),
            describe(b)
        )
    })
}

/// The finite values of `v`.
fn finite(v: &[f64]) -> Vec<f64> {
    v.iter().copied().filter(|x| x.is_finite()).collect()
}
