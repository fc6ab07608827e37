//! `GET /exec/{namespace}/{pod}/{container}?command=…`: a command in a container,
//! its streams carried over a WebSocket in the Kubernetes channel protocol
//! (`v5.channel.k8s.io`, or `v4.channel.k8s.io`).
//!
//! Every binary message starts with its channel: 0 stdin (client to server), 1 stdout,
//! 2 stderr, 3 the final `Status` (exit code), 4 terminal resize (`{"Width":…,
//! "Height":…}`), 255 close (v5: `[255, 0]` closes stdin). The server ends the
//! session with the status on channel 3 and a close frame; kubectl exits with the
//! code it finds there. A client that goes away ends the command.

use std::time::Duration;

use axum::extract::ws::{close_code, CloseFrame, Message, WebSocket};
use bytes::Bytes;
use futures::stream::SplitSink;
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::runtime::exec::{self, ExecProcess, ExecStdio, ExecTarget};
use crate::runtime::ShimCommand;

pub const V5: &str = "v5.channel.k8s.io";
pub const V4: &str = "v4.channel.k8s.io";
/// The subprotocols served, preferred first.
pub const PROTOCOLS: [&str; 2] = [V5, V4];

pub const STDIN: u8 = 0;
pub const STDOUT: u8 = 1;
pub const STDERR: u8 = 2;
pub const ERROR: u8 = 3;
pub const RESIZE: u8 = 4;
pub const CLOSE: u8 = 255;

/// How long output may still arrive once the command exited.
const DRAIN_AFTER_EXIT: Duration = Duration::from_millis(300);

/// The query of an exec request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecOptions {
    pub command: Vec<String>,
    pub stdio: ExecStdio,
}

impl ExecOptions {
    /// Parses `command` (repeated), `stdin`, `stdout`, `stderr` and `tty`.
    pub fn parse(query: &str) -> Result<ExecOptions, String> {
        let mut options = ExecOptions::default();
        for (key, value) in form_urlencoded::parse(query.as_bytes()) {
            let on = || matches!(value.as_ref(), "true" | "1" | "True" | "");
            match key.as_ref() {
                "command" => options.command.push(value.to_string()),
                "stdin" | "input" => options.stdio.stdin = on(),
                "stdout" | "output" => options.stdio.stdout = on(),
                "stderr" | "error" => options.stdio.stderr = on(),
                "tty" => options.stdio.tty = on(),
                _ => {}
            }
        }
        if options.command.is_empty() {
            return Err("you must specify at least 1 command".into());
        }
        let stdio = &options.stdio;
        if !(stdio.stdin || stdio.stdout || stdio.stderr) {
            return Err("you must specify at least 1 of stdin, stdout, stderr".into());
        }
        if stdio.tty && stdio.stderr {
            // A terminal has one output stream; kubectl never asks for both.
            options.stdio.stderr = false;
        }
        Ok(options)
    }
}

/// The final status of an exec, as sent on channel 3.
pub fn exit_status(code: i32, command: &[String]) -> Value {
    if code == 0 {
        return json!({"metadata": {}, "status": "Success"});
    }
    json!({
        "metadata": {},
        "status": "Failure",
        "message": format!(
            "command terminated with non-zero exit code: error executing command {command:?}, exit code {code}"
        ),
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
    })
}

/// A failure to run the command at all, as sent on channel 3.
pub fn error_status(message: &str) -> Value {
    json!({
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": "InternalError",
        "code": 500,
    })
}

/// The close frame that ends a session: "normal closure" (1000), which the client
/// reads as the end of every stream (a close without a code is an error to it).
pub fn close_normal() -> Message {
    Message::Close(Some(CloseFrame {
        code: close_code::NORMAL,
        reason: "".into(),
    }))
}

/// The session's only writer to the socket: sends what arrives on the returned
/// channel until a close frame or the last sender goes, then closes the socket.
pub fn spawn_sender(
    mut sink: SplitSink<WebSocket, Message>,
) -> (mpsc::Sender<Message>, tokio::task::JoinHandle<()>) {
    let (out_tx, mut out_rx) = mpsc::channel::<Message>(16);
    let writer = tokio::spawn(async move {
        while let Some(message) = out_rx.recv().await {
            let closing = matches!(message, Message::Close(_));
            if sink.send(message).await.is_err() || closing {
                break;
            }
        }
        let _ = sink.close().await;
    });
    (out_tx, writer)
}

/// One message on a channel.
pub fn frame(channel: u8, data: &[u8]) -> Message {
    let mut bytes = Vec::with_capacity(data.len() + 1);
    bytes.push(channel);
    bytes.extend_from_slice(data);
    Message::Binary(Bytes::from(bytes))
}

/// What a client message asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientFrame {
    Stdin(Bytes),
    Resize { width: u16, height: u16 },
    CloseStdin,
    Ignored,
}

/// Decodes a binary message from the client.
pub fn decode(data: &Bytes) -> ClientFrame {
    match data.first() {
        Some(&STDIN) => ClientFrame::Stdin(data.slice(1..)),
        Some(&RESIZE) => {
            #[derive(serde::Deserialize)]
            #[serde(rename_all = "PascalCase")]
            struct Size {
                width: u16,
                height: u16,
            }
            match serde_json::from_slice::<Size>(&data[1..]) {
                Ok(size) => ClientFrame::Resize {
                    width: size.width,
                    height: size.height,
                },
                Err(_) => ClientFrame::Ignored,
            }
        }
        Some(&CLOSE) if data.get(1) == Some(&STDIN) => ClientFrame::CloseStdin,
        _ => ClientFrame::Ignored,
    }
}

/// Runs one exec session on an upgraded WebSocket.
pub async fn session(
    socket: WebSocket,
    helper: ShimCommand,
    target: ExecTarget,
    options: ExecOptions,
) {
    let (sink, mut stream) = socket.split();
    let (out_tx, writer) = spawn_sender(sink);
    let process = match exec::spawn(&helper, &target, &options.command, options.stdio) {
        Ok(process) => process,
        Err(e) => {
            let status = error_status(&e.to_string());
            let _ = out_tx
                .send(frame(ERROR, status.to_string().as_bytes()))
                .await;
            let _ = out_tx.send(close_normal()).await;
            drop(out_tx);
            let _ = writer.await;
            return;
        }
    };
    let status = run_process(process, &mut stream, &out_tx, &options.command).await;
    if let Some(status) = status {
        let _ = out_tx
            .send(frame(ERROR, status.to_string().as_bytes()))
            .await;
        let _ = out_tx.send(close_normal()).await;
    }
    drop(out_tx);
    let _ = writer.await;
}

/// Pumps the process's streams until it exits (its status) or the client leaves
/// (`None`, the process killed).
async fn run_process(
    mut process: ExecProcess,
    stream: &mut futures::stream::SplitStream<WebSocket>,
    out: &mpsc::Sender<Message>,
    command: &[String],
) -> Option<Value> {
    let mut pumps = Vec::new();
    let mut input: Option<Box<dyn AsyncWrite + Send + Unpin>> = None;
    let mut resizer = None;
    let tty = process.pty.is_some();
    if let Some(pty) = process.pty.take() {
        resizer = pty.try_clone_fd().ok();
        let (read, write) = tokio::io::split(pty);
        pumps.push(tokio::spawn(pump(read, STDOUT, out.clone())));
        input = Some(Box::new(write));
    } else {
        if let Some(stdout) = process.stdout.take() {
            pumps.push(tokio::spawn(pump(stdout, STDOUT, out.clone())));
        }
        if let Some(stderr) = process.stderr.take() {
            pumps.push(tokio::spawn(pump(stderr, STDERR, out.clone())));
        }
        if let Some(stdin) = process.stdin.take() {
            input = Some(Box::new(stdin));
        }
    }
    let mut client_open = true;
    let exit = loop {
        tokio::select! {
            status = process.child.wait() => break status,
            message = stream.next(), if client_open => match message {
                Some(Ok(Message::Binary(data))) => match decode(&data) {
                    ClientFrame::Stdin(bytes) => {
                        if let Some(writer) = input.as_mut() {
                            if writer.write_all(&bytes).await.is_err() || writer.flush().await.is_err() {
                                input = None;
                            }
                        }
                    }
                    ClientFrame::Resize { width, height } => {
                        if let Some(fd) = &resizer {
                            let _ = exec::resize(fd, width, height);
                        }
                    }
                    ClientFrame::CloseStdin => {
                        if let Some(mut writer) = input.take() {
                            // A terminal stays open for the output: end of file
                            // is its EOF character.
                            if tty {
                                let _ = writer.write_all(b"\x04").await;
                            }
                            let _ = writer.shutdown().await;
                        }
                    }
                    ClientFrame::Ignored => {}
                },
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => client_open = false,
                Some(Ok(_)) => {}
            },
            _ = out.closed() => client_open = false,
        }
        if !client_open {
            exec::terminate(&mut process.child).await;
            for pump in pumps {
                pump.abort();
            }
            return None;
        }
    };
    drop(input);
    let deadline = tokio::time::Instant::now() + DRAIN_AFTER_EXIT;
    for pump in pumps {
        let _ = tokio::time::timeout_at(deadline, pump).await;
    }
    Some(match exit {
        Ok(status) => exit_status(exec::exit_code(status), command),
        Err(e) => error_status(&format!("waiting for the command: {e}")),
    })
}

/// Copies one output stream into channel messages.
async fn pump(mut reader: impl AsyncRead + Unpin, channel: u8, out: mpsc::Sender<Message>) {
    let mut buf = vec![0u8; 16 * 1024];
    while let Ok(n) = reader.read(&mut buf).await {
        if n == 0 || out.send(frame(channel, &buf[..n])).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parsing() {
        let o = ExecOptions::parse("command=sh&command=-c&command=echo+hi&stdout=true&stderr=true")
            .expect("parse");
        assert_eq!(o.command, vec!["sh", "-c", "echo hi"]);
        assert!(o.stdio.stdout && o.stdio.stderr && !o.stdio.stdin && !o.stdio.tty);
        let o = ExecOptions::parse("command=sh&stdin=true&stdout=true&tty=true&stderr=true")
            .expect("parse");
        assert!(o.stdio.tty && o.stdio.stdin && !o.stdio.stderr);
        assert!(ExecOptions::parse("stdout=true").is_err());
        assert!(ExecOptions::parse("command=ls").is_err());
    }

    #[test]
    fn statuses_carry_the_exit_code() {
        assert_eq!(
            exit_status(0, &[]).to_string(),
            r#"{"metadata":{},"status":"Success"}"#
        );
        let failed = exit_status(3, &["sh".into()]);
        assert_eq!(failed["reason"], "NonZeroExitCode");
        assert_eq!(failed["details"]["causes"][0]["reason"], "ExitCode");
        assert_eq!(failed["details"]["causes"][0]["message"], "3");
        assert!(failed["message"]
            .as_str()
            .expect("message")
            .starts_with("command terminated with non-zero exit code"));
        assert_eq!(error_status("boom")["reason"], "InternalError");
    }

    #[test]
    fn frames_both_ways() {
        assert_eq!(
            frame(STDOUT, b"hi"),
            Message::Binary(Bytes::from_static(b"\x01hi"))
        );
        assert_eq!(
            decode(&Bytes::from_static(b"\x00data")),
            ClientFrame::Stdin(Bytes::from_static(b"data"))
        );
        assert_eq!(
            decode(&Bytes::from_static(b"\x04{\"Width\":80,\"Height\":24}")),
            ClientFrame::Resize {
                width: 80,
                height: 24
            }
        );
        assert_eq!(
            decode(&Bytes::from_static(b"\xff\x00")),
            ClientFrame::CloseStdin
        );
        assert_eq!(
            decode(&Bytes::from_static(b"\x04junk")),
            ClientFrame::Ignored
        );
        assert_eq!(decode(&Bytes::new()), ClientFrame::Ignored);
    }
}
