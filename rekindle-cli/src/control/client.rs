//! The commands' side of the control socket: one request sent, one response read and
//! parsed, each failure naming the socket.

use super::*;

/// Sends `request` to the daemon at `path` and returns its response.
pub fn request(path: &Path, request: &Request) -> Result<Response, ControlError> {
    let socket_error = |source| ControlError::Socket {
        path: path.to_path_buf(),
        source,
    };
    let mut stream = StdUnixStream::connect(path).map_err(socket_error)?;
    let mut text = serde_json::to_string(request).map_err(|e| ControlError::Protocol {
        path: path.to_path_buf(),
        problem: e.to_string(),
    })?;
    text.push('\n');
    stream.write_all(text.as_bytes()).map_err(socket_error)?;
    let mut reply = String::new();
    BufReader::new(stream)
        .read_line(&mut reply)
        .map_err(socket_error)?;
    serde_json::from_str(&reply).map_err(|e| ControlError::Protocol {
        path: path.to_path_buf(),
        problem: format!("{e} in {:?}", reply.trim()),
    })
}
