//! systemd readiness notification (`Type=notify`), shared by both binaries.
//!
//! Outside systemd (`NOTIFY_SOCKET` unset) every call is a no-op. Failures are returned, never
//! fatal: a unit without `Type=notify` simply ignores the messages.

use std::os::unix::net::UnixDatagram;

/// Sends `state` (e.g. `"READY=1"`, `"STOPPING=1"`) to the service manager, if there is one.
///
/// # Errors
/// When the notification socket cannot be reached.
pub fn notify(state: &str) -> std::io::Result<()> {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else { return Ok(()) };
    let socket = UnixDatagram::unbound()?;
    let bytes = path.as_encoded_bytes();
    match bytes.strip_prefix(b"@") {
        // An abstract socket: the name follows the '@'.
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            socket.send_to_addr(state.as_bytes(), &addr)?;
        }
        None => {
            socket.send_to(state.as_bytes(), &path)?;
        }
    }
    Ok(())
}
