//! batch/v1 Jobs and CronJobs: upstream's defaults, the selector a Job gets from its
//! own uid, and the validation of their common fields.

use super::fields::{at, immutable, non_negative, one_of, positive, required};
use super::meta::child_mut;
use super::status::Cause;
use super::workloads::{default_template, validate_template};
use serde_json::{Value, json};

/// The label that ties a Job's pods to it (and its legacy spelling, still set).
const CONTROLLER_UID: &str = "batch.kubernetes.io/controller-uid";
const JOB_NAME: &str = "batch.kubernetes.io/job-name";
const JOB_RESTART_POLICIES: &[&str] = &["OnFailure", "Never"];

/// A Job's defaults; without `manualSelector: true` its selector is generated from
/// its uid and the template labelled to match, as upstream does on create.
pub fn default_job(job: &mut Value) {
    let uid = at(job, &["metadata", "uid"])
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let name = at(job, &["metadata", "name"])
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    default_job_spec(job, &["spec"]);
    let manual = at(job, &["spec", "manualSelector"]) == Some(&json!(true));
    if manual || uid.is_empty() {
        return;
    }
    let Some(root) = job.as_object_mut() else {
        return;
    };
    let spec = child_mut(root, "spec");
    if at(&Value::Object(spec.clone()), &["selector"]).is_none_or(Value::is_null) {
        spec.insert(
            "selector".into(),
            json!({"matchLabels": {CONTROLLER_UID: uid}}),
        );
    }
    let template = child_mut(spec, "template");
    let labels = child_mut(child_mut(template, "metadata"), "labels");
    for (key, value) in [
        (CONTROLLER_UID, &uid),
        (JOB_NAME, &name),
        ("controller-uid", &uid),
        ("job-name", &name),
    ] {
        labels.entry(key).or_insert(json!(value));
    }
}

/// The spec defaults of a Job (also applied to a CronJob's job template).
fn default_job_spec(object: &mut Value, path: &[&str]) {
    let mut cur = &mut *object;
    for part in path {
        match cur.get_mut(*part) {
            Some(next) => cur = next,
            None => return,
        }
    }
    let Some(spec) = cur.as_object_mut() else {
        return;
    };
    let no_counts = !spec.contains_key("completions") && !spec.contains_key("parallelism");
    if no_counts {
        spec.insert("completions".into(), json!(1));
    }
    spec.entry("parallelism").or_insert(json!(1));
    spec.entry("backoffLimit").or_insert(json!(6));
    spec.entry("completionMode").or_insert(json!("NonIndexed"));
    spec.entry("suspend").or_insert(json!(false));
    // Without a pod failure policy, replacements start once the old pod is gone.
    if !spec.contains_key("podFailurePolicy") {
        spec.entry("podReplacementPolicy")
            .or_insert(json!("TerminatingOrFailed"));
    }
    let mut template_path = path.to_vec();
    template_path.push("template");
    default_template(object, &template_path);
}

fn validate_job_spec(object: &Value, path: &[&str], causes: &mut Vec<Cause>) {
    let field = |name: &'static str| {
        let mut p = path.to_vec();
        p.push(name);
        p
    };
    for name in [
        "parallelism",
        "completions",
        "backoffLimit",
        "activeDeadlineSeconds",
    ] {
        non_negative(object, &field(name), causes);
    }
    positive(object, &field("activeDeadlineSeconds"), causes);
    one_of(
        object,
        &field("completionMode"),
        &["NonIndexed", "Indexed"],
        causes,
    );
    // An Indexed Job's indexes are 0..completions: without completions there are none.
    let indexed = at(object, &field("completionMode")).and_then(Value::as_str) == Some("Indexed");
    let completions = at(object, &field("completions"));
    if indexed && completions.is_none_or(Value::is_null) {
        causes.push(Cause::required(
            field("completions").join("."),
            "when completion mode is Indexed",
        ));
    }
    validate_template(object, &field("template"), JOB_RESTART_POLICIES, causes);
}

pub fn validate_job(job: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    required(job, &["spec", "selector"], &mut causes);
    validate_job_spec(job, &["spec"], &mut causes);
    causes
}

/// A Job's selector and pod template never change after creation.
pub fn validate_job_update(old: &Value, new: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    immutable(old, new, &["spec", "selector"], &mut causes);
    immutable(old, new, &["spec", "completionMode"], &mut causes);
    if at(old, &["spec", "template"]) != at(new, &["spec", "template"]) {
        causes.push(Cause {
            reason: "FieldValueInvalid",
            field: "spec.template".into(),
            message: "Invalid value: core.PodTemplateSpec{...}: field is immutable".into(),
        });
    }
    causes
}

pub fn default_cron_job(cron: &mut Value) {
    if let Some(root) = cron.as_object_mut() {
        let spec = child_mut(root, "spec");
        spec.entry("concurrencyPolicy").or_insert(json!("Allow"));
        spec.entry("suspend").or_insert(json!(false));
        spec.entry("successfulJobsHistoryLimit").or_insert(json!(3));
        spec.entry("failedJobsHistoryLimit").or_insert(json!(1));
    }
    // Upstream defaults only the pod template inside the job template; the Job's own
    // fields are defaulted when the CronJob controller creates it.
    default_template(cron, &["spec", "jobTemplate", "spec", "template"]);
}

/// Whether `schedule` is a cron expression the CronJob controller accepts: five
/// fields, or one of the `@` shorthands.
fn valid_schedule(schedule: &str) -> bool {
    const SHORTHANDS: &[&str] = &[
        "@yearly",
        "@annually",
        "@monthly",
        "@weekly",
        "@daily",
        "@midnight",
        "@hourly",
    ];
    let schedule = schedule.trim();
    if SHORTHANDS.contains(&schedule) || schedule.starts_with("@every ") {
        return true;
    }
    let fields: Vec<&str> = schedule.split_whitespace().collect();
    fields.len() == 5
        && fields.iter().all(|f| {
            f.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '*' | '/' | ',' | '-' | '?'))
        })
}

pub fn validate_cron_job(cron: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let name = at(cron, &["metadata", "name"])
        .and_then(Value::as_str)
        .unwrap_or_default();
    // The CronJob controller appends an 11-character suffix to name its Jobs.
    if name.len() > 52 {
        causes.push(Cause::invalid(
            "metadata.name",
            name,
            "must be no more than 52 characters",
        ));
    }
    match at(cron, &["spec", "schedule"]).and_then(Value::as_str) {
        None | Some("") => causes.push(Cause::required("spec.schedule", "")),
        Some(s) if !valid_schedule(s) => causes.push(Cause::invalid(
            "spec.schedule",
            s,
            &format!("unparseable schedule: {s:?}"),
        )),
        Some(_) => {}
    }
    one_of(
        cron,
        &["spec", "concurrencyPolicy"],
        &["Allow", "Forbid", "Replace"],
        &mut causes,
    );
    non_negative(cron, &["spec", "startingDeadlineSeconds"], &mut causes);
    non_negative(cron, &["spec", "successfulJobsHistoryLimit"], &mut causes);
    non_negative(cron, &["spec", "failedJobsHistoryLimit"], &mut causes);
    validate_template(
        cron,
        &["spec", "jobTemplate", "spec", "template"],
        JOB_RESTART_POLICIES,
        &mut causes,
    );
    causes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job() -> Value {
        json!({"metadata": {"name": "pi", "uid": "u-1"}, "spec": {"template": {"spec": {
            "restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}}})
    }

    #[test]
    fn job_defaults_and_generated_selector() {
        let mut j = job();
        default_job(&mut j);
        let spec = &j["spec"];
        assert_eq!(
            (
                &spec["completions"],
                &spec["parallelism"],
                &spec["backoffLimit"]
            ),
            (&json!(1), &json!(1), &json!(6))
        );
        assert_eq!(spec["completionMode"], "NonIndexed");
        assert_eq!(spec["suspend"], false);
        assert_eq!(spec["selector"]["matchLabels"][CONTROLLER_UID], "u-1");
        assert_eq!(spec["template"]["metadata"]["labels"]["job-name"], "pi");
        assert!(validate_job(&j).is_empty());
        let mut changed = j.clone();
        changed["spec"]["template"]["spec"]["containers"][0]["image"] = json!("other");
        assert_eq!(validate_job_update(&j, &changed)[0].field, "spec.template");
        let mut always = job();
        always["spec"]["template"]["spec"]["restartPolicy"] = json!("Always");
        default_job(&mut always);
        assert_eq!(
            validate_job(&always)[0].field,
            "spec.template.spec.restartPolicy"
        );
    }

    #[test]
    fn indexed_jobs_need_completions() {
        let mut j = job();
        j["spec"]["completionMode"] = json!("Indexed");
        j["spec"]["parallelism"] = json!(2);
        default_job(&mut j);
        let causes = validate_job(&j);
        assert_eq!(causes.len(), 1);
        assert_eq!(causes[0].field, "spec.completions");
        assert!(
            causes[0]
                .message
                .contains("when completion mode is Indexed")
        );
        j["spec"]["completions"] = json!(4);
        assert!(validate_job(&j).is_empty());
    }

    #[test]
    fn cron_job_defaults_and_schedule() {
        let mut c = json!({"metadata": {"name": "hello"}, "spec": {"schedule": "*/1 * * * *",
            "jobTemplate": {"spec": {"template": {"spec": {"restartPolicy": "OnFailure",
                "containers": [{"name": "c", "image": "busybox"}]}}}}}});
        default_cron_job(&mut c);
        assert_eq!(c["spec"]["concurrencyPolicy"], "Allow");
        assert_eq!(c["spec"]["successfulJobsHistoryLimit"], 3);
        assert_eq!(c["spec"]["failedJobsHistoryLimit"], 1);
        assert!(validate_cron_job(&c).is_empty());
        c["spec"]["schedule"] = json!("not a schedule");
        assert_eq!(validate_cron_job(&c)[0].field, "spec.schedule");
    }
}
