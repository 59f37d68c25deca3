//! `l3lb explain <namespace>/<service>`: why each of the Service's addresses is or is not
//! announced on this node, in the order the daemon decides, asked of the running daemon over its
//! control socket.
use std::path::PathBuf;

use anyhow::bail;
use clap::Args;

use super::OutputFormat;
use crate::{
    core::desired::explain::Explanation,
    daemon::control::{Answer, DEFAULT_CONTROL_SOCKET, Request, ask},
};

#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// The Service, as namespace/name.
    pub service: String,
    /// The daemon's control socket (`l3lb run --control-socket`).
    #[arg(long, env = "L3LB_CONTROL_SOCKET", default_value = DEFAULT_CONTROL_SOCKET)]
    pub control_socket: PathBuf,
    #[arg(short = 'o', long, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

pub async fn run(args: ExplainArgs) -> anyhow::Result<()> {
    let request = Request::Explain {
        service: args.service.clone(),
    };
    let explanation = match ask(&args.control_socket, &request).await? {
        Answer::Explain(e) => *e,
        Answer::Error(e) => bail!("{e}"),
        other => bail!("unexpected answer {other:?}"),
    };
    match args.output {
        super::OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&explanation)?),
        super::OutputFormat::Table => print!("{}", render(&explanation)),
    }
    Ok(())
}

/// One line per check, `ok` or `no`, per address; a verdict per address.
pub fn render(e: &Explanation) -> String {
    let mut out = format!("Service {} on node {}\n", e.service, e.node);
    let mark = |ok: bool| if ok { "ok" } else { "no" };
    for l in &e.lines {
        out += &format!("  {:<3} {:<10} {}\n", mark(l.ok), l.check, l.text);
    }
    for v in &e.vips {
        let verdict = if v.announced {
            "announced"
        } else {
            "not announced"
        };
        out += &format!("{}: {verdict}\n", v.vip);
        for l in &v.lines {
            out += &format!("  {:<3} {:<10} {}\n", mark(l.ok), l.check, l.text);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::desired::explain::{Line, VipExplanation};

    #[test]
    fn one_line_per_check_under_each_address() {
        let line = |check: &str, ok, text: &str| Line {
            check: check.into(),
            ok,
            text: text.into(),
        };
        let e = Explanation {
            service: "default/web".into(),
            node: "node1".into(),
            lines: vec![line("service", true, "type LoadBalancer")],
            vips: vec![VipExplanation {
                vip: "198.51.100.10".parse().unwrap(),
                announced: false,
                lines: vec![line("excluded", false, "withdrawn: the node is cordoned")],
            }],
        };
        assert_eq!(
            render(&e),
            "Service default/web on node node1\n  ok  service    type LoadBalancer\n\
             198.51.100.10: not announced\n  no  excluded   withdrawn: the node is cordoned\n"
        );
    }
}
