//! Health checks declared by a definition run in the agent on their interval and feed its
//! signed status: `status --json` shows each check, and the fleet view shows the node
//! unhealthy while one fails.

mod common;
#[path = "common/fleet.rs"]
mod fleet;

use fleet::*;
use std::time::Duration;

const DEADLINE: Duration = Duration::from_secs(20);

#[test]
fn a_failing_check_makes_the_node_unhealthy_until_it_passes() {
    let mut f = LocalFleet::new("health");
    let a = f.add();
    f.agents[a].spawn();
    f.agents[a].wait_ready(DEADLINE);
    let def = r#"
name = "app"
[[resource]]
type = "file"
path = "/etc/app.conf"
content = "port = 8080\n"
[[check]]
name = "ready-file"
file = "/run/app.ready"
interval = "1s"
[[check]]
name = "true-command"
command = "true"
interval = "1s"
"#;
    let bundle = f.sign("app", def, 1);
    let out = f.publish(&bundle, &f.agents[a].control.to_string_lossy());
    assert_eq!(out.code, 0, "publish: {}", out.stderr);

    let st = f.wait("the checks to have run", DEADLINE, || {
        let s = f.agents[a].try_status()?;
        (s["health"]["checks"].as_array()?.len() == 2).then_some(s)
    });
    assert_eq!(st["health"]["ok"], false, "{st:#}");
    let checks = st["health"]["checks"].as_array().unwrap();
    let by_name = |n: &str| checks.iter().find(|c| c["name"] == n).cloned().unwrap();
    assert_eq!(by_name("ready-file")["ok"], false);
    assert_eq!(by_name("true-command")["ok"], true);
    let me = f.agents[a].id.clone().unwrap();
    f.wait(
        "the fleet view to show the node unhealthy",
        DEADLINE,
        || {
            let v = f.agents[a].try_fleet()?;
            let row = v["nodes"]
                .as_array()?
                .iter()
                .find(|n| n["node"] == me.as_str())?
                .clone();
            (row["health"]["ok"] == false
                && row["health"]["checks"]
                    .as_array()?
                    .iter()
                    .any(|c| c["name"] == "ready-file"))
            .then_some(())
        },
    );

    // The service becomes ready: the check passes on its next run.
    std::fs::create_dir_all(f.agents[a].in_root("/run")).unwrap();
    std::fs::write(f.agents[a].in_root("/run/app.ready"), "").unwrap();
    f.wait("the node to be healthy again", DEADLINE, || {
        let s = f.agents[a].try_status()?;
        let v = f.agents[a].try_fleet()?;
        let row = v["nodes"]
            .as_array()?
            .iter()
            .find(|n| n["node"] == me.as_str())?
            .clone();
        (s["health"]["ok"] == true && row["health"]["ok"] == true).then_some(())
    });
}
