//! Render worker processes: spawning `<exe> __render-worker`, sending requests, receiving replies
//! on one shared channel, and killing a worker that hangs or misbehaves.

use super::protocol::{read_frame, write_frame, Reply, Request};
use anyhow::{Context, Result};
use crossbeam_channel::Sender;
use std::ffi::OsString;
use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};

/// What a worker's reader thread reports. `generation` tells replies of a replaced worker apart
/// from its successor's in the same slot.
pub enum WorkerMsg {
    Reply {
        slot: usize,
        generation: u64,
        reply: Reply,
    },
    /// The worker's stdout closed or sent garbage: it died or is unusable.
    Gone {
        slot: usize,
        generation: u64,
        why: String,
    },
}

/// How to start workers.
#[derive(Clone, Debug)]
pub struct WorkerSpawn {
    pub exe: PathBuf,
    /// Extra environment for the workers (tests use it for fault injection).
    pub env: Vec<(OsString, OsString)>,
}

impl WorkerSpawn {
    /// `exe`, or the current executable.
    pub fn new(exe: Option<&Path>, env: Vec<(OsString, OsString)>) -> Result<Self> {
        let exe = match exe {
            Some(p) => p.to_path_buf(),
            None => std::env::current_exe()
                .context("cannot find the current executable to start render workers")?,
        };
        Ok(WorkerSpawn { exe, env })
    }
}

/// One running worker process.
pub struct WorkerProcess {
    child: Child,
    stdin: Option<BufWriter<ChildStdin>>,
    pub generation: u64,
}

impl WorkerProcess {
    /// Starts a worker whose replies go to `replies` tagged with `slot` and `generation`.
    pub fn spawn(
        spec: &WorkerSpawn,
        slot: usize,
        generation: u64,
        replies: Sender<WorkerMsg>,
    ) -> Result<Self> {
        let mut cmd = Command::new(&spec.exe);
        cmd.arg("__render-worker")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in &spec.env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().with_context(|| {
            format!(
                "cannot start render worker {} __render-worker",
                spec.exe.display()
            )
        })?;
        let stdout = child.stdout.take().context("render worker has no stdout")?;
        let stdin = child.stdin.take().map(BufWriter::new);
        std::thread::Builder::new()
            .name(format!("render-worker-{slot}-reader"))
            .spawn(move || {
                let mut r = BufReader::with_capacity(1 << 20, stdout);
                loop {
                    let msg = match read_frame(&mut r) {
                        Ok(Some(frame)) => match Reply::decode(&frame) {
                            Ok(reply) => WorkerMsg::Reply {
                                slot,
                                generation,
                                reply,
                            },
                            Err(e) => WorkerMsg::Gone {
                                slot,
                                generation,
                                why: format!("sent a bad reply ({e:#})"),
                            },
                        },
                        Ok(None) => WorkerMsg::Gone {
                            slot,
                            generation,
                            why: "exited".into(),
                        },
                        Err(e) => WorkerMsg::Gone {
                            slot,
                            generation,
                            why: format!("broke its pipe ({e:#})"),
                        },
                    };
                    let last = matches!(msg, WorkerMsg::Gone { .. });
                    if replies.send(msg).is_err() || last {
                        return;
                    }
                }
            })
            .context("cannot start a render worker reader thread")?;
        Ok(WorkerProcess {
            child,
            stdin,
            generation,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends one request. An error means the worker is unusable (its stdin closed).
    pub fn send(&mut self, req: &Request) -> Result<()> {
        let w = self
            .stdin
            .as_mut()
            .context("render worker stdin already closed")?;
        write_frame(w, &req.encode()).context("cannot write to render worker")
    }

    /// Kills the process (SIGKILL) and reaps it; returns how it ended.
    pub fn kill(mut self) -> Option<ExitStatus> {
        self.stdin = None;
        let _ = self.child.kill();
        self.child.wait().ok()
    }

    /// Reaps a worker that has already exited (its stdout closed), killing it if it has not.
    pub fn reap(mut self) -> Option<ExitStatus> {
        self.stdin = None;
        // Its stdout closed, so it is exiting; give it a moment, then make sure.
        for _ in 0..50 {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        self.kill()
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        // Closing stdin lets an idle worker exit on its own; kill covers a busy one.
        self.stdin = None;
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// "killed by signal 9 (SIGKILL)" / "exit status 3".
pub fn describe_exit(status: Option<ExitStatus>) -> String {
    use std::os::unix::process::ExitStatusExt;
    match status {
        None => "unknown exit".into(),
        Some(s) => match (s.code(), s.signal()) {
            (Some(c), _) => format!("exit status {c}"),
            (None, Some(sig)) => format!("killed by signal {sig}{}", signal_name(sig)),
            _ => "unknown exit".into(),
        },
    }
}

fn signal_name(sig: i32) -> &'static str {
    match sig {
        libc::SIGABRT => " (SIGABRT)",
        libc::SIGKILL => " (SIGKILL)",
        libc::SIGSEGV => " (SIGSEGV)",
        libc::SIGBUS => " (SIGBUS)",
        libc::SIGFPE => " (SIGFPE)",
        libc::SIGILL => " (SIGILL)",
        libc::SIGTERM => " (SIGTERM)",
        _ => "",
    }
}
