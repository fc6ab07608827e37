//! `GET /attach/{namespace}/{pod}/{container}?stdin=…&stdout=…&stderr=…&tty=…`: the
//! container's own streams over a WebSocket, in the same channel protocol as exec
//! (`v5.channel.k8s.io` / `v4.channel.k8s.io`, see `exec`).
//!
//! The session connects to the container's shim (`runtime::attach`): output the
//! shim sends goes to channels 1 and 2 (as asked for), client input on channel 0,
//! resizes (4) and the v5 close of stdin go to the shim. When the container's output
//! ends (it exited) the session sends a `Success` status on channel 3 and closes, as
//! the kubelet does; a client that leaves just disconnects (a `stdinOnce` container
//! then loses its stdin).

use axum::extract::ws::{Message, WebSocket};
use futures::StreamExt;
use tokio::sync::mpsc;

use super::exec::{self, close_normal, frame, ClientFrame, ERROR, STDERR, STDOUT};
use crate::runtime::attach::{self as shim, FrameReader, FrameWriter};
use crate::runtime::exec::ExecStdio;

/// The query of an attach request.
pub fn parse(query: &str) -> Result<ExecStdio, String> {
    let mut stdio = ExecStdio::default();
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        let on = || matches!(value.as_ref(), "true" | "1" | "True" | "");
        match key.as_ref() {
            "stdin" | "input" => stdio.stdin = on(),
            "stdout" | "output" => stdio.stdout = on(),
            "stderr" | "error" => stdio.stderr = on(),
            "tty" => stdio.tty = on(),
            _ => {}
        }
    }
    if !(stdio.stdin || stdio.stdout || stdio.stderr) {
        return Err("you must specify at least 1 of stdin, stdout, stderr".into());
    }
    Ok(stdio)
}

/// Runs one attach session on an upgraded WebSocket.
pub async fn session(socket: WebSocket, shim: shim::AttachClient, stdio: ExecStdio) {
    let (sink, mut stream) = socket.split();
    let (out_tx, writer) = exec::spawn_sender(sink);
    let (reader, mut input) = shim.split();
    let output = tokio::spawn(relay_output(reader, stdio, out_tx.clone()));
    let mut output = std::pin::pin!(output);
    let ended = loop {
        tokio::select! {
            _ = &mut output => break true,
            message = stream.next() => match message {
                Some(Ok(Message::Binary(data))) if stdio.stdin => {
                    // A shim that went away ends its output too, which ends the loop.
                    let _ = forward_input(&mut input, exec::decode(&data)).await;
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break false,
                Some(Ok(_)) => {}
            },
        }
    };
    if ended {
        let status = serde_json::json!({"metadata": {}, "status": "Success"});
        let _ = out_tx
            .send(frame(ERROR, status.to_string().as_bytes()))
            .await;
        let _ = out_tx.send(close_normal()).await;
    } else {
        output.abort();
    }
    drop(input);
    drop(out_tx);
    let _ = writer.await;
}

/// Copies the shim's output frames to the client until the shim closes.
async fn relay_output(mut reader: FrameReader, stdio: ExecStdio, out: mpsc::Sender<Message>) {
    while let Ok(Some((channel, data))) = reader.next().await {
        let channel = match channel {
            shim::STDOUT if stdio.stdout => STDOUT,
            shim::STDERR if stdio.stderr => STDERR,
            // A terminal has one stream; kubectl asks for stdout only.
            shim::STDERR if stdio.tty && stdio.stdout => STDOUT,
            _ => continue,
        };
        if out.send(frame(channel, &data)).await.is_err() {
            return;
        }
    }
}

async fn forward_input(input: &mut FrameWriter, frame: ClientFrame) -> std::io::Result<()> {
    match frame {
        ClientFrame::Stdin(bytes) => input.send(shim::STDIN, &bytes).await,
        ClientFrame::Resize { width, height } => {
            input
                .send(shim::RESIZE, &shim::resize_payload(width, height))
                .await
        }
        ClientFrame::CloseStdin => input.send(shim::CLOSE_STDIN, &[]).await,
        ClientFrame::Ignored => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attach_queries() {
        let s = parse("stdin=true&stdout=true&stderr=true&tty=false").expect("parse");
        assert!(s.stdin && s.stdout && s.stderr && !s.tty);
        let s = parse("stdout=1&tty=true").expect("parse");
        assert!(s.stdout && s.tty && !s.stdin);
        assert!(parse("tty=true").is_err());
    }
}
