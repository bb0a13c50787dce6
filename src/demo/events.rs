//! A Sysmon-like Windows event log as NDJSON (`date=…/hour=…/events.json`), with the
//! PsExec-like service install burst.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::Path;

use anyhow::Result;
use chrono::{DateTime, Duration, TimeZone, Timelike, Utc};

use super::{cast, Rng};

const COMPUTERS: usize = 40;

struct Event {
    t: i64,
    /// The event as its NDJSON line (far less memory than the JSON value: a week's
    /// five million events are held until they are sorted).
    v: String,
}

fn computer(i: usize) -> String {
    if i < 30 {
        format!("WKS-{:03}", i + 1)
    } else {
        format!("RDP-{:02}", i - 20)
    }
}

fn event(t: DateTime<Utc>, id: i32, computer: &str, fields: serde_json::Value) -> Event {
    let channel = if id < 256 {
        "Microsoft-Windows-Sysmon/Operational"
    } else if id == 7045 {
        "System"
    } else {
        "Security"
    };
    let mut v = serde_json::json!({
        "timestamp": t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
        "computer": computer,
        "event_id": id,
        "channel": channel,
    });
    if let (Some(o), Some(f)) = (v.as_object_mut(), fields.as_object()) {
        for (k, val) in f {
            o.insert(k.clone(), val.clone());
        }
    }
    Event { t: t.timestamp_micros(), v: v.to_string() }
}

pub fn write(dir: &Path, rng: &mut Rng, start: DateTime<Utc>, hours: u32, rows: usize) -> Result<usize> {
    let mut evs = Vec::with_capacity(rows + 200);
    let span = i64::from(hours) * 3_600_000_000;
    let images = [
        ("C:\\Windows\\explorer.exe", "C:\\Windows\\System32\\userinit.exe"),
        ("C:\\Program Files\\Google\\Chrome\\Application\\chrome.exe", "C:\\Windows\\explorer.exe"),
        ("C:\\Windows\\System32\\svchost.exe", "C:\\Windows\\System32\\services.exe"),
        ("C:\\Program Files\\Microsoft Office\\root\\Office16\\OUTLOOK.EXE", "C:\\Windows\\explorer.exe"),
        ("C:\\Windows\\System32\\taskhostw.exe", "C:\\Windows\\System32\\svchost.exe"),
    ];
    let dlls = ["ntdll.dll", "kernel32.dll", "advapi32.dll", "user32.dll", "crypt32.dll", "ws2_32.dll"];
    for _ in 0..rows {
        let t = Utc
            .timestamp_micros(start.timestamp_micros() + rng.range(0, span as u64 - 1) as i64)
            .single()
            .unwrap_or(start);
        let c = computer(rng.range(0, COMPUTERS as u64 - 1) as usize);
        let (img, parent) = *rng.pick(&images);
        let user = format!("CORP\\user{:03}", rng.range(1, 120));
        let e = match rng.range(0, 9) {
            0 | 1 => event(
                t,
                4624,
                &c,
                serde_json::json!({"user": user, "logon_type": *rng.pick(&[2, 3, 3, 10]), "src_ip": format!("10.0.{}.{}", rng.range(1, 3), rng.range(10, 209))}),
            ),
            2 => event(
                t,
                4688,
                &c,
                serde_json::json!({"user": user, "image": img, "parent_image": parent, "command_line": img}),
            ),
            3 | 4 => event(
                t,
                1,
                &c,
                serde_json::json!({"user": user, "image": img, "parent_image": parent, "command_line": img}),
            ),
            5 => event(
                t,
                3,
                &c,
                serde_json::json!({"user": user, "image": img, "dst_ip": format!("{}.{}.{}.{}", rng.range(20, 90), rng.range(0, 255), rng.range(0, 255), rng.range(1, 254)), "dst_port": 443}),
            ),
            6 | 7 => event(
                t,
                7,
                &c,
                serde_json::json!({"image": img, "image_loaded": format!("C:\\Windows\\System32\\{}", rng.pick(&dlls))}),
            ),
            8 => event(
                t,
                11,
                &c,
                serde_json::json!({"image": img, "target_filename": format!("C:\\Users\\user{:03}\\AppData\\Local\\Temp\\tmp{}.tmp", rng.range(1, 120), rng.range(1000, 9999))}),
            ),
            _ => event(
                t,
                13,
                &c,
                serde_json::json!({"image": img, "target_object": "HKLM\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Run"}),
            ),
        };
        evs.push(e);
    }
    // Incident 5: PsExec-like lateral movement from the scanner onto 12 hosts within a minute.
    let burst = super::incident_at(start, hours, 26, 65);
    for k in 0..12 {
        let c = computer(20 + k);
        let t = burst + Duration::milliseconds(k as i64 * 2500);
        evs.push(event(
            t,
            4624,
            &c,
            serde_json::json!({"user": "CORP\\svc_backup", "logon_type": 3, "src_ip": cast::SCANNER}),
        ));
        evs.push(event(t + Duration::milliseconds(300), 7045, &c, serde_json::json!({"user": "LocalSystem", "service_name": "PSEXESVC", "image": "C:\\Windows\\PSEXESVC.exe"})));
        evs.push(event(t + Duration::milliseconds(600), 1, &c, serde_json::json!({"user": "NT AUTHORITY\\SYSTEM", "image": "C:\\Windows\\PSEXESVC.exe", "parent_image": "C:\\Windows\\System32\\services.exe", "command_line": "C:\\Windows\\PSEXESVC.exe"})));
        evs.push(event(t + Duration::milliseconds(900), 1, &c, serde_json::json!({"user": "NT AUTHORITY\\SYSTEM", "image": "C:\\Windows\\System32\\cmd.exe", "parent_image": "C:\\Windows\\PSEXESVC.exe", "command_line": "cmd.exe /c whoami & net group \"domain admins\" /domain"})));
        for (j, dll) in dlls.iter().enumerate() {
            evs.push(event(t + Duration::milliseconds(1000 + j as i64 * 50), 7, &c, serde_json::json!({"image": "C:\\Windows\\PSEXESVC.exe", "image_loaded": format!("C:\\Windows\\System32\\{dll}")})));
        }
    }
    evs.sort_by_key(|e| e.t);
    let n = evs.len();
    let mut i = 0;
    while i < evs.len() {
        let hour = evs[i].t.div_euclid(3_600_000_000);
        let t = Utc.timestamp_micros(hour * 3_600_000_000).single().unwrap_or(start);
        let part = dir.join(format!("date={}", t.format("%Y-%m-%d"))).join(format!("hour={:02}", t.hour()));
        fs::create_dir_all(&part)?;
        let mut w = BufWriter::new(File::create(part.join("events.json"))?);
        while i < evs.len() && evs[i].t.div_euclid(3_600_000_000) == hour {
            writeln!(w, "{}", evs[i].v)?;
            i += 1;
        }
        w.flush()?;
    }
    Ok(n)
}
