//! Slow transfers across a gateway shutdown (`soak gwstop`), and, tagged
//! `sigkill`, the client processes the soak kills mid-transfer.

use crate::client::{transfer, DataEnd, Limits, Seen};
use crate::content::{ClientFault, ServerFault, Spec};
use crate::net::{Reply, Res};
use crate::plan::{Mode, Plan};
use crate::{arg, ending, limits, login, num, targets};
use std::collections::BTreeMap;
use std::time::Duration;

/// Slow transfers that are still running when the gateway is told to
/// stop: its shutdown must end them with a reset, never a clean close.
pub async fn run(args: &[String]) -> Res<i32> {
    let t = targets(args)?.remove(0);
    let sessions = num(args, "--sessions", 20);
    let size = num(args, "--size", 32 * 1024 * 1024);
    // `--tag sigkill`: the same slow transfers from a process that will be
    // SIGKILLed mid-transfer.
    let tag = arg(args, "--tag").unwrap_or_else(|| "gwstop".into());
    let first_seed = num(args, "--seed", 1000);
    let lim = Limits {
        cap: Duration::from_secs(num(args, "--cap", 120)),
        ..limits(args)
    };
    let mut tasks = Vec::new();
    for i in 0..sessions {
        let t = t.clone();
        let tag = tag.clone();
        tasks.push(tokio::spawn(async move {
            let spec = Spec {
                upload: i % 2 == 1,
                size,
                seed: first_seed + i,
                server: ServerFault::None,
                client: ClientFault::Slow,
                client_tag: tag,
            };
            let p = Plan {
                index: i,
                mode: [Mode::Pasv, Mode::Epsv, Mode::Port, Mode::Eprt][(i % 4) as usize],
                path: format!("soak/{}-{i}", spec.name()),
                spec,
            };
            let s = match login(&t, lim).await {
                Ok(mut c) => tokio::time::timeout(lim.cap, transfer(&mut c, &p, lim))
                    .await
                    .unwrap_or(Seen {
                        data: DataEnd::Stalled(0),
                        reply: Some(Reply::Timeout),
                        parked: None,
                        reusable: false,
                    }),
                Err(r) => Seen {
                    data: DataEnd::NotOpened(r.text()),
                    reply: None,
                    parked: None,
                    reusable: false,
                },
            };
            (p, s)
        }));
    }
    println!("GWSTOP STARTED {sessions}");
    let mut bad = 0;
    let mut endings: BTreeMap<String, u64> = BTreeMap::new();
    for task in tasks {
        let (p, s) = task.await?;
        let dir = if p.spec.upload { "upload" } else { "download" };
        *endings.entry(format!("{dir}:{}", ending(&s))).or_default() += 1;
        let broken = match (&s.data, &s.reply) {
            (DataEnd::Short(n), _) if !p.spec.upload => Some(format!(
                "the download ended with a clean close (FIN) after {n} of {} bytes",
                p.spec.size
            )),
            (_, Some(r)) if r.is_2xx() && s.data != DataEnd::Complete => {
                Some(format!("{} for a transfer cut by the shutdown", r.text()))
            }
            (DataEnd::Stalled(_), _) | (_, Some(Reply::Timeout)) => {
                Some(format!("no outcome within the deadline: {:?}", s.data))
            }
            _ => None,
        };
        if let Some(why) = broken {
            bad += 1;
            println!(
                "VIOLATION GWSTOP: #{} {} {} {}: {why}",
                p.index,
                p.mode.tag(),
                if p.spec.upload { "STOR" } else { "RETR" },
                p.path
            );
        }
    }
    println!("gwstop endings: {endings:?}");
    Ok(if bad == 0 { 0 } else { 1 })
}
