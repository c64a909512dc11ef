//! The report: its steps and verdicts, the one-line summary (each cause said once), and the JSON
//! of `wharf check --json`, through serde. Scripts read that JSON: its keys and their types stay
//! as they are; new keys may be added.

use std::time::Duration;

use serde::{Serialize, Serializer};

use super::software::Software;
use crate::client::DataMethod;

/// How a step went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Ok,
    /// Works, but something is wrong that breaks some clients.
    Warn,
    Fail,
    /// Not tried (an earlier step failed, or it cannot apply).
    Skipped,
}

impl Verdict {
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Ok => "ok",
            Verdict::Warn => "warn",
            Verdict::Fail => "fail",
            Verdict::Skipped => "skipped",
        }
    }
}

/// One step of the diagnosis.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    /// `resolve`, `connect`, `banner`, `login`, `syst`, `feat`, `EPSV`, `PASV`, `EPRT`, `PORT`.
    pub name: String,
    pub verdict: Verdict,
    /// What was seen: the reply, the error, the addresses.
    pub evidence: String,
    #[serde(rename = "ms", serialize_with = "millis")]
    pub elapsed: Duration,
    /// On failure or warning: the likely cause, in plain words.
    pub cause: Option<String>,
    /// On failure or warning: what to change.
    pub advice: Option<String>,
}

impl Step {
    /// A step without cause or advice.
    pub(crate) fn new(
        name: &str,
        verdict: Verdict,
        evidence: impl Into<String>,
        elapsed: Duration,
    ) -> Step {
        Step {
            name: name.into(),
            verdict,
            evidence: evidence.into(),
            elapsed,
            cause: None,
            advice: None,
        }
    }

    /// The step with its likely cause and the change to make.
    pub(crate) fn because(mut self, cause: impl Into<String>, advice: impl Into<String>) -> Step {
        self.cause = Some(cause.into());
        self.advice = Some(advice.into());
        self
    }

    /// Whether the step tells that something works (a warning works too).
    pub(crate) fn works(&self) -> bool {
        matches!(self.verdict, Verdict::Ok | Verdict::Warn)
    }
}

/// Milliseconds, as a JSON number.
fn millis<S: Serializer>(elapsed: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX))
}

/// The whole diagnosis.
#[derive(Debug, Clone)]
pub struct Report {
    pub target: String,
    pub software: Option<Software>,
    pub steps: Vec<Step>,
    /// Data methods that listed a directory.
    pub working: Vec<DataMethod>,
    /// One line: which modes work and which to use.
    pub summary: String,
    /// 0: at least one data mode works; 1: the server answers but login or every data mode
    /// fails; 3: the control port cannot be reached.
    pub exit_code: u8,
}

/// The JSON object, key by key in the order scripts have seen since the first version.
#[derive(Serialize)]
struct Wire<'a> {
    target: &'a str,
    /// The server's product name; `null` before a banner was read.
    server: Option<&'static str>,
    steps: &'a [Step],
    working_modes: Vec<&'static str>,
    /// Every step's advice, in step order.
    advice: Vec<&'a str>,
    summary: &'a str,
    exit_code: u8,
}

impl Serialize for Report {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        Wire {
            target: &self.target,
            server: self.software.map(Software::name),
            steps: &self.steps,
            working_modes: self.working.iter().map(|m| m.name()).collect(),
            advice: self
                .steps
                .iter()
                .filter_map(|s| s.advice.as_deref())
                .collect(),
            summary: &self.summary,
            exit_code: self.exit_code,
        }
        .serialize(s)
    }
}

impl Report {
    /// The report as one JSON object.
    pub fn to_json(&self) -> String {
        // Strings, numbers and lists only: serde_json cannot fail on them.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// A JSON string literal.
pub fn json_str(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

/// A reply slower than this is worth a warning: clients time out, users give up.
pub(crate) const SLOW: Duration = Duration::from_secs(2);

/// A warning step when any step that worked took longer than [`SLOW`].
pub(crate) fn slow_step(steps: &[Step]) -> Option<Step> {
    let slow: Vec<String> = steps
        .iter()
        .filter(|s| {
            // Replies on the control connection only: a data step's time is spent waiting for
            // a data connection (a passive port that times out is not a slow server), and a
            // step that failed or warned has its own cause.
            s.verdict == Verdict::Ok
                && s.elapsed > SLOW
                && !matches!(
                    s.name.as_str(),
                    "resolve"
                        | "connect"
                        | "EPSV"
                        | "PASV"
                        | "EPRT"
                        | "PORT"
                        | "IPv4"
                        | "IPv6"
                        | "list"
                        | "resume"
                        | "upload"
                        | "delete"
                        | "rename"
                )
        })
        .map(|s| format!("{} {:.1} s", s.name, s.elapsed.as_secs_f64()))
        .collect();
    if slow.is_empty() {
        return None;
    }
    Some(Step::new("speed", Verdict::Warn, format!("slow: {}", slow.join(", ")), Duration::ZERO).because(
        format!(
            "the server took over {} s to answer: reverse DNS lookups of clients, a slow disk or user database, or an overloaded server; clients with short timeouts give up",
            SLOW.as_secs()
        ),
        "turn off reverse DNS lookups of clients (vsftpd reverse_lookup_enable=NO, ProFTPD UseReverseDNS off), and check the server's load and log",
    ))
}

/// The summary line: what works and what to use, then the warnings of the data modes, the
/// server's end and a failed upload, each cause once with every step it came from.
pub(crate) fn summary(
    target: &str,
    steps: &[Step],
    working: &[DataMethod],
    exit_code: u8,
) -> String {
    let mut summary = outcome(target, steps, working, exit_code);
    for (cause, names) in causes_once(steps) {
        match names.as_slice() {
            ["server"] => summary.push_str(&format!("; the server's end: {cause}")),
            ["upload"] => summary.push_str(&format!("; the upload fails: {cause}")),
            names => summary.push_str(&format!("; warning ({}): {cause}", names.join(", "))),
        }
    }
    summary
}

/// Which modes work and which to use, or how far the check got.
fn outcome(target: &str, steps: &[Step], working: &[DataMethod], exit_code: u8) -> String {
    let names: Vec<&str> = working.iter().map(|m| m.name()).collect();
    let passive = working.iter().any(|m| m.is_passive());
    let active = working.iter().any(|m| !m.is_passive());
    let failed = |name: &str| {
        steps
            .iter()
            .any(|s| s.name == name && s.verdict == Verdict::Fail)
    };
    let tls_failed = failed("tls");
    match (passive, active) {
        _ if exit_code == 3 => format!("{target} cannot be reached: no FTP possible"),
        (false, false) if tls_failed => "TLS fails: no FTPS session possible".to_string(),
        _ if tls_failed => format!(
            "TLS certificate refused by verifying clients (see the tls step); past it, working: {}",
            names.join(", ")
        ),
        (false, false) if failed("login") => "the server answers, but the login fails".to_string(),
        (false, false) if !steps.iter().any(|s| s.name == "login") => {
            "the server does not get as far as a login".to_string()
        }
        (false, false) => "no data mode works: listings and transfers fail".to_string(),
        (true, true) => format!(
            "working: {}; use passive mode (the default)",
            names.join(", ")
        ),
        (true, false) => format!("working: {}; use passive mode", names.join(", ")),
        (false, true) => format!(
            "working: {}; only active mode works: use active mode (`--active`)",
            names.join(", ")
        ),
    }
}

/// The causes the summary repeats (warnings of the data modes, a PASV address that is not the
/// server's, the server's end, the other family, a failed upload), each once, with the steps
/// it came from.
fn causes_once(steps: &[Step]) -> Vec<(&str, Vec<&str>)> {
    let mut said: Vec<(&str, Vec<&str>)> = Vec::new();
    for step in steps.iter().filter(|s| {
        (s.verdict == Verdict::Warn
            && matches!(
                s.name.as_str(),
                "EPSV" | "PASV" | "EPRT" | "PORT" | "server" | "IPv4" | "IPv6"
            ))
            || (s.verdict == Verdict::Fail && s.name == "upload")
    }) {
        if let Some(cause) = &step.cause {
            match said.iter_mut().find(|(c, _)| c == cause) {
                Some((_, names)) => names.push(step.name.as_str()),
                None => said.push((cause, vec![step.name.as_str()])),
            }
        }
    }
    said
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn step(name: &str, verdict: Verdict) -> Step {
        Step::new(name, verdict, "seen", Duration::from_millis(12))
    }

    fn fixture() -> Report {
        Report {
            target: "ftp.example.net:21".into(),
            software: Some(Software::Vsftpd),
            steps: vec![
                step("connect", Verdict::Ok),
                step("PASV", Verdict::Warn).because("a cause", "an advice"),
                step("write", Verdict::Skipped),
            ],
            working: vec![DataMethod::Epsv, DataMethod::Pasv],
            summary: "working: EPSV, PASV".into(),
            exit_code: 0,
        }
    }

    /// The shape scripts rely on: every key, its type, and `null` (not a missing key) for what
    /// is not there; keys in the order the hand-written JSON had them.
    #[test]
    fn json_keys_and_types() {
        let text = fixture().to_json();
        assert_eq!(
            text,
            concat!(
                r#"{"target":"ftp.example.net:21","server":"vsftpd","steps":["#,
                r#"{"name":"connect","verdict":"ok","evidence":"seen","ms":12,"cause":null,"advice":null},"#,
                r#"{"name":"PASV","verdict":"warn","evidence":"seen","ms":12,"cause":"a cause","advice":"an advice"},"#,
                r#"{"name":"write","verdict":"skipped","evidence":"seen","ms":12,"cause":null,"advice":null}],"#,
                r#""working_modes":["EPSV","PASV"],"advice":["an advice"],"#,
                r#""summary":"working: EPSV, PASV","exit_code":0}"#
            )
        );
        let json: Value = serde_json::from_str(&text).unwrap();
        assert!(json["target"].is_string() && json["server"].is_string());
        assert!(json["summary"].is_string() && json["exit_code"].is_u64());
        assert!(json["working_modes"].is_array() && json["advice"].is_array());
        for s in json["steps"].as_array().unwrap() {
            assert_eq!(s.as_object().unwrap().len(), 6);
            assert!(s["name"].is_string() && s["verdict"].is_string());
            assert!(s["evidence"].is_string() && s["ms"].is_u64());
            assert!(s["cause"].is_null() || s["cause"].is_string());
            assert!(s["advice"].is_null() || s["advice"].is_string());
        }
        let unreached = Report {
            software: None,
            steps: Vec::new(),
            working: Vec::new(),
            ..fixture()
        };
        assert_eq!(
            unreached.to_json(),
            r#"{"target":"ftp.example.net:21","server":null,"steps":[],"working_modes":[],"advice":[],"summary":"working: EPSV, PASV","exit_code":0}"#
        );
    }

    #[test]
    fn verdict_names_are_the_json_names() {
        for v in [Verdict::Ok, Verdict::Warn, Verdict::Fail, Verdict::Skipped] {
            assert_eq!(serde_json::to_value(v).unwrap(), v.name());
        }
    }

    #[test]
    fn json_escaping() {
        assert_eq!(json_str("a\"b\\c\n\u{1}"), "\"a\\\"b\\\\c\\n\\u0001\"");
    }

    #[test]
    fn summaries() {
        let t = "h:21";
        let login_failed = [step("banner", Verdict::Ok), step("login", Verdict::Fail)];
        let tls_failed = [step("tls", Verdict::Fail)];
        let both = [DataMethod::Epsv, DataMethod::Eprt];
        let table: &[(&[Step], &[DataMethod], u8, &str)] = &[
            (&[], &[], 3, "h:21 cannot be reached: no FTP possible"),
            (&tls_failed, &[], 1, "TLS fails: no FTPS session possible"),
            (
                &tls_failed,
                &[DataMethod::Epsv],
                1,
                "TLS certificate refused by verifying clients (see the tls step); past it, working: EPSV",
            ),
            (
                &login_failed,
                &[],
                1,
                "the server answers, but the login fails",
            ),
            (
                &[step("banner", Verdict::Fail)],
                &[],
                1,
                "the server does not get as far as a login",
            ),
            (
                &[step("login", Verdict::Ok)],
                &[],
                1,
                "no data mode works: listings and transfers fail",
            ),
            (
                &[],
                &both,
                0,
                "working: EPSV, EPRT; use passive mode (the default)",
            ),
            (
                &[],
                &[DataMethod::Pasv],
                0,
                "working: PASV; use passive mode",
            ),
            (
                &[],
                &[DataMethod::Port],
                0,
                "working: PORT; only active mode works: use active mode (`--active`)",
            ),
        ];
        for (steps, working, code, want) in table {
            assert_eq!(summary(t, steps, working, *code), *want);
        }
    }

    #[test]
    fn each_cause_once_with_its_steps() {
        let steps = [
            step("EPSV", Verdict::Warn).because("nat", "a"),
            step("PASV", Verdict::Warn).because("nat", "a"),
            step("pwd", Verdict::Warn).because("not summarised", "b"),
            step("server", Verdict::Warn).because("ports closed", "c"),
            step("upload", Verdict::Fail).because("no room", "d"),
        ];
        assert_eq!(
            summary("h:21", &steps, &[DataMethod::Epsv], 0),
            "working: EPSV; use passive mode; warning (EPSV, PASV): nat; the server's end: ports closed; the upload fails: no room"
        );
    }

    #[test]
    fn slow_steps_on_the_control_connection_only() {
        let slow = Duration::from_secs(3);
        let steps = [
            Step::new("login", Verdict::Ok, "", slow),
            Step::new("EPSV", Verdict::Ok, "", slow),
            Step::new("pwd", Verdict::Warn, "", slow),
            Step::new("syst", Verdict::Ok, "", Duration::from_millis(5)),
        ];
        let speed = slow_step(&steps).unwrap();
        assert_eq!(speed.verdict, Verdict::Warn);
        assert_eq!(speed.evidence, "slow: login 3.0 s");
        assert!(slow_step(&steps[1..]).is_none());
    }
}
