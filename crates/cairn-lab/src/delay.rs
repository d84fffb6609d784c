//! Latency faults: a userspace packet delayer on a netfilter queue, for
//! kernels without `netem` (the lab's kernel has neither netem nor nft's
//! `queue` expression, but it has iptables' `NFQUEUE` target).
//!
//! [`Delay::start`] runs `cairn-lab delayer` inside a host's namespace,
//! waits until it has bound its queue, then adds iptables rules in that
//! namespace sending the host's outgoing IPv4 packets on `eth0` (all of
//! them, or only those to chosen hosts) to the queue with
//! `--queue-bypass`. The delayer holds each packet's verdict for
//! `delay ± jitter` ms (seeded, order kept), drops a seeded share of them
//! (`loss`), and accepts each one when it is due. [`Delay::stop`] (and
//! `Drop`) removes the rules first, then SIGTERMs the delayer, which
//! accepts every packet it still holds and exits.
//!
//! The one thing not to get wrong: queued packets are held *in the kernel*
//! until the delayer gives a verdict. If the delayer dies without SIGTERM
//! (SIGKILL, a crash, its lifetime bound), the packets it held are dropped
//! and, with no listener on the queue, the rules' bypass lets later packets
//! through undelayed: a dead delayer is a short burst of loss, then no
//! fault, never a black hole. Every bound is explicit: packets held
//! ([`DelaySpec::cap`], beyond it packets are dropped and counted), the
//! kernel queue, and the delayer's lifetime ([`DelaySpec::lifetime_ms`]).
//!
//! The delayer talks NFQUEUE over a raw `NETLINK_NETFILTER` socket itself
//! (no libnetfilter_queue): bind, metadata-only copy mode, a queue length
//! limit, and one verdict message per packet, batched per send.

use std::collections::VecDeque;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::cluster::Cluster;
use crate::workload::Rng;
use crate::{Host, Lab, LabError, ProcId};

/// Most packets a delayer may hold when not told otherwise.
pub const CAP_DEFAULT: usize = 4096;
/// Upper bound of [`DelaySpec::cap`].
pub const CAP_MAX: usize = 65_536;
/// Upper bound of a delay and of a jitter, in ms.
pub const DELAY_MS_MAX: u64 = 10_000;
/// Default lifetime of a delayer, in ms.
pub const LIFETIME_MS_DEFAULT: u64 = 600_000;
/// Upper bound of a delayer's lifetime, in ms.
pub const LIFETIME_MS_MAX: u64 = 3_600_000;
/// The comment on every rule a [`Delay`] adds (`cairn-delay-<queue>`).
pub const RULE_COMMENT_PREFIX: &str = "cairn-delay-";

/// How long the delayer sleeps at most between checks of its stop flag
/// and lifetime.
const POLL_MS_MAX: u64 = 50;
/// Datagrams read per loop turn at most (the rest wait for the next turn).
const RECV_BATCH_MAX: usize = 1024;
/// Verdict messages per `send` at most.
const VERDICTS_PER_SEND_MAX: usize = 1024;
/// How long `Delay::start` waits for the delayer to bind its queue.
const BIND_WAIT: Duration = Duration::from_secs(10);
/// How long `Delay::stop` waits for the delayer to exit after SIGTERM.
const STOP_WAIT: Duration = Duration::from_secs(5);

// ----- the schedule: pure, seeded --------------------------------------

/// What the delayer does with a packet it receives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Admit {
    /// Held until `release_us` (microseconds after the delayer started).
    Held { release_us: u64 },
    /// Dropped by the seeded loss.
    DroppedLoss,
    /// Dropped because `cap` packets are already held.
    DroppedCap,
}

#[derive(Clone, Copy, Debug)]
struct HeldPacket {
    id: u32,
    arrived_us: u64,
    release_us: u64,
}

/// Counters of a delayer run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    received: u64,
    released: u64,
    released_early: u64,
    dropped_loss: u64,
    dropped_cap: u64,
    held_max: u64,
    hold_us_min: Option<u64>,
    hold_us_max: u64,
    hold_us_sum: u64,
}

/// Decides when each packet is released: `delay ± jitter` after it
/// arrived (uniform, seeded), but never before the packet ahead of it, so
/// the order of packets is kept (TCP sees latency, not reordering).
pub(crate) struct Scheduler {
    delay_us: u64,
    jitter_us: u64,
    /// Loss probability in parts per million.
    loss_ppm: u64,
    cap: usize,
    rng: Rng,
    held: VecDeque<HeldPacket>,
    last_release_us: u64,
    counts: Counts,
}

impl Scheduler {
    pub(crate) fn new(delay_ms: u64, jitter_ms: u64, loss: f64, cap: usize, seed: u64) -> Self {
        let loss = if loss.is_finite() {
            loss.clamp(0.0, 1.0)
        } else {
            0.0
        };
        Scheduler {
            delay_us: delay_ms.min(DELAY_MS_MAX) * 1000,
            jitter_us: jitter_ms.min(DELAY_MS_MAX) * 1000,
            // In 0..=1_000_000 by the clamp above.
            loss_ppm: (loss * 1_000_000.0).round() as u64,
            cap: cap.clamp(1, CAP_MAX),
            rng: Rng::new(seed ^ 0x6465_6c61_7965_7221),
            held: VecDeque::new(),
            last_release_us: 0,
            counts: Counts::default(),
        }
    }

    /// Takes in packet `id`, arrived at `now_us`.
    pub(crate) fn admit(&mut self, id: u32, now_us: u64) -> Admit {
        self.counts.received += 1;
        if self.loss_ppm > 0 && self.rng.below(1_000_000) < self.loss_ppm {
            self.counts.dropped_loss += 1;
            return Admit::DroppedLoss;
        }
        if self.held.len() >= self.cap {
            self.counts.dropped_cap += 1;
            return Admit::DroppedCap;
        }
        let mut hold_us = self.delay_us;
        if self.jitter_us > 0 {
            let offset = self.rng.below(2 * self.jitter_us + 1);
            hold_us = (hold_us + offset).saturating_sub(self.jitter_us);
        }
        let release_us = (now_us + hold_us).max(self.last_release_us);
        self.last_release_us = release_us;
        self.held.push_back(HeldPacket {
            id,
            arrived_us: now_us,
            release_us,
        });
        self.counts.held_max = self.counts.held_max.max(self.held.len() as u64);
        Admit::Held { release_us }
    }

    /// When the next held packet is due.
    pub(crate) fn next_release_us(&self) -> Option<u64> {
        self.held.front().map(|p| p.release_us)
    }

    /// The next packet due at `now_us`, if any.
    pub(crate) fn pop_due(&mut self, now_us: u64) -> Option<u32> {
        if self.held.front()?.release_us > now_us {
            return None;
        }
        self.pop(now_us, false)
    }

    /// The next held packet, due or not (shutting down).
    pub(crate) fn pop_any(&mut self, now_us: u64) -> Option<u32> {
        self.pop(now_us, true)
    }

    fn pop(&mut self, now_us: u64, early: bool) -> Option<u32> {
        let p = self.held.pop_front()?;
        let c = &mut self.counts;
        if early && p.release_us > now_us {
            c.released_early += 1;
        } else {
            let hold = now_us.saturating_sub(p.arrived_us);
            c.released += 1;
            c.hold_us_min = Some(c.hold_us_min.map_or(hold, |m| m.min(hold)));
            c.hold_us_max = c.hold_us_max.max(hold);
            c.hold_us_sum += hold;
        }
        Some(p.id)
    }

    pub(crate) fn held_len(&self) -> usize {
        self.held.len()
    }

    pub(crate) fn counts(&self) -> &Counts {
        &self.counts
    }
}

// ----- NFQUEUE over netlink --------------------------------------------

const NLMSG_HDR_LEN: usize = 16;
const NFGENMSG_LEN: usize = 4;
const NFNL_SUBSYS_QUEUE: u16 = 3;
const NFQNL_MSG_PACKET: u16 = 0;
const NFQNL_MSG_VERDICT: u16 = 1;
const NFQNL_MSG_CONFIG: u16 = 2;
const NFQA_PACKET_HDR: u16 = 1;
const NFQA_VERDICT_HDR: u16 = 2;
const NFQA_CFG_CMD: u16 = 1;
const NFQA_CFG_PARAMS: u16 = 2;
const NFQA_CFG_QUEUE_MAXLEN: u16 = 3;
const NFQNL_CFG_CMD_BIND: u8 = 1;
const NFQNL_CFG_CMD_UNBIND: u8 = 2;
const NFQNL_COPY_META: u8 = 1;
const NLA_TYPE_MASK: u16 = 0x3fff;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
/// `NF_DROP`.
pub(crate) const VERDICT_DROP: u32 = 0;
/// `NF_ACCEPT`.
pub(crate) const VERDICT_ACCEPT: u32 = 1;

/// One netlink message of interest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NlMsg {
    /// A queued packet, by id.
    Packet(u32),
    /// An acknowledgement (`errno == 0`) or error for request `seq`.
    Ack { seq: u32, errno: i32 },
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Parses every complete netlink message of a datagram (bytes from the
/// kernel: every offset is checked, a short or odd message ends parsing).
pub(crate) fn parse_datagram(data: &[u8], mut f: impl FnMut(NlMsg)) {
    let mut off = 0;
    while let Some(len) = u32_at(data, off) {
        let len = len as usize;
        if len < NLMSG_HDR_LEN || off + len > data.len() {
            return;
        }
        let msg = &data[off..off + len];
        let kind = u16_at(msg, 4).unwrap_or(0);
        if kind == NLMSG_ERROR {
            // nlmsgerr: i32 error, then the request's header (seq at +8).
            if let (Some(err), Some(seq)) = (u32_at(msg, 16), u32_at(msg, 20 + 8)) {
                f(NlMsg::Ack {
                    seq,
                    errno: (err as i32).wrapping_neg(),
                });
            }
        } else if kind == ((NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET) {
            if let Some(id) = packet_id(&msg[(NLMSG_HDR_LEN + NFGENMSG_LEN).min(len)..]) {
                f(NlMsg::Packet(id));
            }
        }
        off += align4(len);
    }
}

/// The packet id from a packet message's attributes.
fn packet_id(attrs: &[u8]) -> Option<u32> {
    let mut off = 0;
    while let (Some(len), Some(kind)) = (u16_at(attrs, off), u16_at(attrs, off + 2)) {
        let len = usize::from(len);
        if len < 4 || off + len > attrs.len() {
            return None;
        }
        if kind & NLA_TYPE_MASK == NFQA_PACKET_HDR {
            // nfqnl_msg_packet_hdr: be32 packet_id, be16 hw_protocol, u8 hook.
            let id = attrs.get(off + 4..off + 8)?;
            return Some(u32::from_be_bytes(id.try_into().ok()?));
        }
        off += align4(len);
    }
    None
}

/// Appends one nfqueue netlink message (header, nfgenmsg, attributes).
fn push_msg(out: &mut Vec<u8>, msg: u16, flags: u16, seq: u32, queue: u16, attrs: &[(u16, &[u8])]) {
    let start = out.len();
    out.extend_from_slice(&0u32.to_ne_bytes()); // length, patched below
    out.extend_from_slice(&((NFNL_SUBSYS_QUEUE << 8) | msg).to_ne_bytes());
    out.extend_from_slice(&flags.to_ne_bytes());
    out.extend_from_slice(&seq.to_ne_bytes());
    out.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel
    out.extend_from_slice(&[libc::AF_UNSPEC as u8, 0]);
    out.extend_from_slice(&queue.to_be_bytes());
    for (kind, payload) in attrs {
        // Attribute payloads here are at most 12 bytes.
        let len = (4 + payload.len()) as u16;
        out.extend_from_slice(&len.to_ne_bytes());
        out.extend_from_slice(&kind.to_ne_bytes());
        out.extend_from_slice(payload);
        out.resize(align4(out.len()), 0);
    }
    let len = (out.len() - start) as u32;
    out[start..start + 4].copy_from_slice(&len.to_ne_bytes());
}

/// Appends a verdict message for packet `id`.
pub(crate) fn push_verdict(out: &mut Vec<u8>, queue: u16, id: u32, verdict: u32) {
    let mut hdr = [0u8; 8];
    hdr[..4].copy_from_slice(&verdict.to_be_bytes());
    hdr[4..].copy_from_slice(&id.to_be_bytes());
    push_msg(
        out,
        NFQNL_MSG_VERDICT,
        NLM_F_REQUEST,
        0,
        queue,
        &[(NFQA_VERDICT_HDR, &hdr)],
    );
}

/// A bound netfilter queue.
struct NfQueue {
    fd: OwnedFd,
    queue: u16,
    seq: u32,
    buf: Vec<u8>,
    out: Vec<u8>,
    /// Packets that arrived while waiting for a configuration ack.
    early: Vec<u32>,
    /// Error replies to verdicts (a packet id the kernel did not know).
    verdict_errors: u64,
}

fn last_err(what: &str) -> io::Error {
    let e = io::Error::last_os_error();
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

impl NfQueue {
    /// Opens a netfilter netlink socket and binds `queue` in metadata-only
    /// mode with a kernel queue limit of `kernel_len_max` packets.
    fn bind(queue: u16, kernel_len_max: u32) -> io::Result<NfQueue> {
        // SAFETY: plain socket(2) call; the result is checked.
        let raw = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_NETFILTER,
            )
        };
        if raw < 0 {
            return Err(last_err("socket(AF_NETLINK, NETLINK_NETFILTER)"));
        }
        // SAFETY: `raw` is a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: an all-zero sockaddr_nl is valid (port id 0: the kernel
        // assigns one); the length passed matches the struct.
        let bound = unsafe {
            let mut addr: libc::sockaddr_nl = std::mem::zeroed();
            addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
            libc::bind(
                fd.as_raw_fd(),
                std::ptr::addr_of!(addr).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if bound < 0 {
            return Err(last_err("bind(netlink)"));
        }
        // A full socket buffer drops the packet in the kernel (or lets it
        // pass with bypass); don't turn that into a read error here.
        set_int_opt(&fd, libc::SOL_NETLINK, libc::NETLINK_NO_ENOBUFS, 1)?;
        // Room for bursts; best effort (needs CAP_NET_ADMIN).
        let _ = set_int_opt(&fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, 8 << 20);
        let mut q = NfQueue {
            fd,
            queue,
            seq: 0,
            buf: vec![0; 1 << 16],
            out: Vec::with_capacity(32 * VERDICTS_PER_SEND_MAX),
            early: Vec::new(),
            verdict_errors: 0,
        };
        q.config_cmd(NFQNL_CFG_CMD_BIND)
            .map_err(|e| io::Error::new(e.kind(), format!("binding queue {queue}: {e}")))?;
        // nfqnl_msg_config_params (packed): be32 copy_range, u8 copy_mode.
        let mut params = [0u8; 5];
        params[4] = NFQNL_COPY_META;
        q.config(&[(NFQA_CFG_PARAMS, &params)])?;
        q.config(&[(NFQA_CFG_QUEUE_MAXLEN, &kernel_len_max.to_be_bytes())])?;
        Ok(q)
    }

    fn config_cmd(&mut self, cmd: u8) -> io::Result<()> {
        // nfqnl_msg_config_cmd: u8 command, u8 pad, be16 pf (unused).
        self.config(&[(NFQA_CFG_CMD, &[cmd, 0, 0, 0])])
    }

    /// Sends a configuration request and waits (at most 2 s) for its ack.
    fn config(&mut self, attrs: &[(u16, &[u8])]) -> io::Result<()> {
        self.seq += 1;
        let seq = self.seq;
        let mut msg = Vec::new();
        push_msg(
            &mut msg,
            NFQNL_MSG_CONFIG,
            NLM_F_REQUEST | NLM_F_ACK,
            seq,
            self.queue,
            attrs,
        );
        self.send(&msg)?;
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "no answer from nfnetlink_queue",
                ));
            }
            self.poll(left.as_millis().try_into().unwrap_or(i32::MAX))?;
            let mut ack = None;
            let mut early = Vec::new();
            self.recv(|m| match m {
                NlMsg::Ack { seq: s, errno } if s == seq => ack = Some(errno),
                NlMsg::Ack { .. } => {}
                NlMsg::Packet(id) => early.push(id),
            })?;
            self.early.extend(early);
            match ack {
                Some(0) => return Ok(()),
                Some(errno) => return Err(io::Error::from_raw_os_error(errno)),
                None => {}
            }
        }
    }

    /// Waits until the socket is readable or `timeout_ms` passed (EINTR
    /// counts as a wake-up).
    fn poll(&self, timeout_ms: i32) -> io::Result<()> {
        let mut p = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        if unsafe { libc::poll(&mut p, 1, timeout_ms) } < 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
        Ok(())
    }

    /// Reads one datagram without blocking; `Ok(false)` when none waits.
    fn recv(&mut self, f: impl FnMut(NlMsg)) -> io::Result<bool> {
        // SAFETY: the buffer is valid for its length.
        let n = unsafe {
            libc::recv(
                self.fd.as_raw_fd(),
                self.buf.as_mut_ptr().cast(),
                self.buf.len(),
                libc::MSG_DONTWAIT,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock => Ok(false),
                io::ErrorKind::Interrupted => Ok(true),
                _ if e.raw_os_error() == Some(libc::ENOBUFS) => Ok(true),
                _ => Err(e),
            };
        }
        let n = usize::try_from(n).unwrap_or(0).min(self.buf.len());
        parse_datagram(&self.buf[..n], f);
        Ok(true)
    }

    fn send(&self, msg: &[u8]) -> io::Result<()> {
        for _ in 0..100 {
            // SAFETY: the buffer is valid for its length; an unconnected
            // netlink socket sends to the kernel.
            let n = unsafe { libc::send(self.fd.as_raw_fd(), msg.as_ptr().cast(), msg.len(), 0) };
            if n >= 0 {
                return Ok(());
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
        Err(io::Error::new(
            io::ErrorKind::Interrupted,
            "send interrupted 100 times",
        ))
    }

    /// Sends verdicts, batched.
    fn verdicts(&mut self, items: &[(u32, u32)]) -> io::Result<()> {
        for chunk in items.chunks(VERDICTS_PER_SEND_MAX) {
            let mut out = std::mem::take(&mut self.out);
            out.clear();
            for &(id, verdict) in chunk {
                push_verdict(&mut out, self.queue, id, verdict);
            }
            let sent = self.send(&out);
            self.out = out;
            sent?;
        }
        Ok(())
    }
}

fn set_int_opt(
    fd: &OwnedFd,
    level: libc::c_int,
    name: libc::c_int,
    v: libc::c_int,
) -> io::Result<()> {
    // SAFETY: the option value is a valid c_int of the length passed.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            std::ptr::addr_of!(v).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(last_err("setsockopt"));
    }
    Ok(())
}

// ----- the delayer process (`cairn-lab delayer`) -----------------------

/// Command-line arguments of `cairn-lab delayer`.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// The netfilter queue to bind (the iptables rule's `--queue-num`).
    #[arg(long)]
    pub queue: u16,
    /// Added delay per packet, in ms.
    #[arg(long, default_value_t = 100)]
    pub delay_ms: u64,
    /// Uniform jitter around the delay (delay ± jitter), in ms; packets
    /// keep their order.
    #[arg(long, default_value_t = 0)]
    pub jitter_ms: u64,
    /// Share of packets dropped at random, 0.0..=1.0.
    #[arg(long, default_value_t = 0.0)]
    pub loss: f64,
    /// Seed of the jitter and loss draws.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Most packets held at once; beyond it packets are dropped (counted).
    #[arg(long, default_value_t = CAP_DEFAULT)]
    pub cap: usize,
    /// Exit (accepting every held packet) after this many ms.
    #[arg(long, default_value_t = LIFETIME_MS_DEFAULT)]
    pub max_lifetime_ms: u64,
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

fn install_stop_handlers() -> io::Result<()> {
    for sig in [libc::SIGTERM, libc::SIGINT] {
        // SAFETY: the handler only stores to an atomic (async-signal-safe);
        // the sigaction struct is fully initialised.
        let r = unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_stop_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut())
        };
        if r != 0 {
            return Err(last_err("sigaction"));
        }
    }
    Ok(())
}

fn micros_since(start: Instant) -> u64 {
    u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX)
}

fn validate(
    delay_ms: u64,
    jitter_ms: u64,
    loss: f64,
    cap: usize,
    lifetime_ms: u64,
) -> Result<(), String> {
    if delay_ms > DELAY_MS_MAX || jitter_ms > DELAY_MS_MAX {
        return Err(format!(
            "delay {delay_ms} ms / jitter {jitter_ms} ms: each must be at most {DELAY_MS_MAX} ms"
        ));
    }
    if !(0.0..=1.0).contains(&loss) {
        return Err(format!("loss {loss} must be within 0.0..=1.0"));
    }
    if cap == 0 || cap > CAP_MAX {
        return Err(format!("cap {cap} must be 1..={CAP_MAX}"));
    }
    if lifetime_ms == 0 || lifetime_ms > LIFETIME_MS_MAX {
        return Err(format!(
            "lifetime {lifetime_ms} ms must be 1..={LIFETIME_MS_MAX}"
        ));
    }
    Ok(())
}

/// Runs the delayer until SIGTERM/SIGINT or its lifetime ends. Prints
/// `{"delayer":"bound",...}` once the queue is bound and
/// `{"delayer":"stopped",...}` with its counters at the end.
pub fn main(args: Args) -> anyhow::Result<ExitCode> {
    validate(
        args.delay_ms,
        args.jitter_ms,
        args.loss,
        args.cap,
        args.max_lifetime_ms,
    )
    .map_err(anyhow::Error::msg)?;
    install_stop_handlers().context("installing the SIGTERM handler")?;
    // Held packets wait in the kernel queue: leave room above the cap for
    // the ones not yet read, so the cap (counted) is what normally bites.
    let kernel_len_max = u32::try_from(args.cap * 2).unwrap_or(u32::MAX);
    let mut q = NfQueue::bind(args.queue, kernel_len_max)
        .with_context(|| format!("binding netfilter queue {}", args.queue))?;
    let start = Instant::now();
    let deadline = start + Duration::from_millis(args.max_lifetime_ms);
    let mut sched = Scheduler::new(
        args.delay_ms,
        args.jitter_ms,
        args.loss,
        args.cap,
        args.seed,
    );
    println!(
        "{}",
        serde_json::json!({"delayer": "bound", "queue": args.queue, "pid": std::process::id()})
    );
    let mut verdicts: Vec<(u32, u32)> = Vec::new();
    let reason = loop {
        if STOP.load(Ordering::SeqCst) {
            break "signal";
        }
        if Instant::now() >= deadline {
            break "lifetime";
        }
        let now_us = micros_since(start);
        let wait_ms = sched
            .next_release_us()
            .map_or(POLL_MS_MAX, |t| t.saturating_sub(now_us).div_ceil(1000))
            .min(POLL_MS_MAX);
        q.poll(i32::try_from(wait_ms).unwrap_or(0))?;
        for id in std::mem::take(&mut q.early) {
            admit(&mut sched, &mut verdicts, id, micros_since(start));
        }
        let mut errors = 0;
        for _ in 0..RECV_BATCH_MAX {
            let now_us = micros_since(start);
            let got = q.recv(|m| match m {
                NlMsg::Packet(id) => admit(&mut sched, &mut verdicts, id, now_us),
                NlMsg::Ack { errno, .. } if errno != 0 => errors += 1,
                NlMsg::Ack { .. } => {}
            })?;
            if !got {
                break;
            }
        }
        q.verdict_errors += errors;
        let now_us = micros_since(start);
        while let Some(id) = sched.pop_due(now_us) {
            verdicts.push((id, VERDICT_ACCEPT));
        }
        q.verdicts(&verdicts).context("sending verdicts")?;
        verdicts.clear();
    };
    // Let everything still held go before the socket closes (closing it
    // would make the kernel drop them).
    let now_us = micros_since(start);
    while let Some(id) = sched.pop_any(now_us) {
        verdicts.push((id, VERDICT_ACCEPT));
    }
    q.verdicts(&verdicts).context("releasing held packets")?;
    let _ = q.config_cmd(NFQNL_CFG_CMD_UNBIND);
    let c = sched.counts();
    println!(
        "{}",
        serde_json::json!({
            "delayer": "stopped", "queue": args.queue, "reason": reason,
            "received": c.received, "released": c.released,
            "released_early": c.released_early, "dropped_loss": c.dropped_loss,
            "dropped_cap": c.dropped_cap, "held_max": c.held_max,
            "hold_us_min": c.hold_us_min.unwrap_or(0), "hold_us_max": c.hold_us_max,
            "hold_us_mean": c.hold_us_sum.checked_div(c.released).unwrap_or(0),
            "verdict_errors": q.verdict_errors, "still_held": sched.held_len(),
        })
    );
    Ok(ExitCode::SUCCESS)
}

fn admit(sched: &mut Scheduler, verdicts: &mut Vec<(u32, u32)>, id: u32, now_us: u64) {
    match sched.admit(id, now_us) {
        Admit::Held { .. } => {}
        Admit::DroppedLoss | Admit::DroppedCap => verdicts.push((id, VERDICT_DROP)),
    }
}

// ----- the lab side: Delay ---------------------------------------------

/// What a [`Delay`] does.
#[derive(Clone, Debug, PartialEq)]
pub struct DelaySpec {
    /// Added delay per packet, in ms (at most [`DELAY_MS_MAX`]).
    pub delay_ms: u64,
    /// Uniform jitter, in ms: each packet waits `delay ± jitter` (but
    /// never overtakes the one ahead of it).
    pub jitter_ms: u64,
    /// Share of the host's outgoing packets dropped at random (0.0..=1.0).
    pub loss: f64,
    /// Seed of the jitter and loss draws.
    pub seed: u64,
    /// Delay only packets to these hosts; empty: every IPv4 packet the
    /// host sends on its lab link (to peers and to the client host).
    pub to: Vec<Host>,
    /// Most packets held at once (beyond: dropped and counted).
    pub cap: usize,
    /// The delayer exits on its own after this long, whatever happens to
    /// the process that started it.
    pub lifetime_ms: u64,
}

impl DelaySpec {
    /// `delay_ms ± jitter_ms` on everything the host sends, no loss,
    /// seed 1, the default cap and lifetime.
    pub fn new(delay_ms: u64, jitter_ms: u64) -> DelaySpec {
        DelaySpec {
            delay_ms,
            jitter_ms,
            loss: 0.0,
            seed: 1,
            to: Vec::new(),
            cap: CAP_DEFAULT,
            lifetime_ms: LIFETIME_MS_DEFAULT,
        }
    }

    /// Checks the bounds.
    pub fn validate(&self) -> Result<(), LabError> {
        validate(
            self.delay_ms,
            self.jitter_ms,
            self.loss,
            self.cap,
            self.lifetime_ms,
        )
        .map_err(LabError::Invalid)
    }

    /// The `cairn-lab delayer ...` arguments for queue `queue`.
    pub fn args(&self, queue: u16) -> Vec<String> {
        vec![
            "delayer".into(),
            "--queue".into(),
            queue.to_string(),
            "--delay-ms".into(),
            self.delay_ms.to_string(),
            "--jitter-ms".into(),
            self.jitter_ms.to_string(),
            "--loss".into(),
            self.loss.to_string(),
            "--seed".into(),
            self.seed.to_string(),
            "--cap".into(),
            self.cap.to_string(),
            "--max-lifetime-ms".into(),
            self.lifetime_ms.to_string(),
        ]
    }
}

/// Counters a delayer printed when it stopped.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DelayStats {
    /// Why it stopped: `signal` or `lifetime`.
    pub reason: String,
    /// Packets received from the queue.
    pub received: u64,
    /// Packets released when due.
    pub released: u64,
    /// Packets released early because the delayer was stopping.
    pub released_early: u64,
    /// Packets dropped by the seeded loss.
    pub dropped_loss: u64,
    /// Packets dropped because the cap was reached.
    pub dropped_cap: u64,
    /// Most packets held at once.
    pub held_max: u64,
    /// Shortest hold of a packet released when due, in µs.
    pub hold_us_min: u64,
    /// Mean hold of the packets released when due, in µs.
    pub hold_us_mean: u64,
    /// Longest hold of a packet released when due, in µs.
    pub hold_us_max: u64,
    /// Verdicts the kernel refused.
    pub verdict_errors: u64,
}

impl DelayStats {
    /// Parses the delayer's `{"delayer":"stopped",...}` line.
    pub fn parse(line: &str) -> Option<DelayStats> {
        let v: serde_json::Value = serde_json::from_str(line.trim()).ok()?;
        if v.get("delayer")?.as_str()? != "stopped" {
            return None;
        }
        let n = |k: &str| v.get(k).and_then(serde_json::Value::as_u64).unwrap_or(0);
        Some(DelayStats {
            reason: v.get("reason")?.as_str()?.to_owned(),
            received: n("received"),
            released: n("released"),
            released_early: n("released_early"),
            dropped_loss: n("dropped_loss"),
            dropped_cap: n("dropped_cap"),
            held_max: n("held_max"),
            hold_us_min: n("hold_us_min"),
            hold_us_mean: n("hold_us_mean"),
            hold_us_max: n("hold_us_max"),
            verdict_errors: n("verdict_errors"),
        })
    }
}

/// Checks that latency faults can run here: the `iptables` command (its
/// `NFQUEUE` target) is present.
pub fn check_available() -> Result<(), LabError> {
    match std::process::Command::new("iptables")
        .arg("--version")
        .stdin(std::process::Stdio::null())
        .output()
    {
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => Err(LabError::LabUnavailable(format!(
            "`iptables --version` failed ({})",
            o.status
        ))),
        Err(e) => Err(LabError::LabUnavailable(format!(
            "the `iptables` command is missing ({e}): install it with `apt-get install iptables`"
        ))),
    }
}

static NEXT_QUEUE: AtomicU16 = AtomicU16::new(0);

/// A queue number unused by this process's other delays (queues are per
/// network namespace, and every lab has its own namespaces).
fn next_queue() -> u16 {
    1 + NEXT_QUEUE.fetch_add(1, Ordering::Relaxed) % 60_000
}

/// Runs `iptables -w 5 ARGS` inside namespace `ns`.
fn iptables(ns: &str, args: &[String]) -> Result<String, LabError> {
    let mut full: Vec<&str> = vec!["netns", "exec", ns, "iptables", "-w", "5"];
    full.extend(args.iter().map(String::as_str));
    match crate::run_cmd("ip", &full) {
        Err(LabError::Command { stderr, .. })
            if stderr.contains("No such file or directory") && stderr.contains("iptables") =>
        {
            Err(LabError::LabUnavailable(
                "the `iptables` command is missing: install it with `apt-get install iptables`"
                    .into(),
            ))
        }
        other => other,
    }
}

/// The iptables rule (after `-A`/`-D`) queueing a host's packets.
fn rule_spec(queue: u16, to: Option<Ipv4Addr>) -> Vec<String> {
    let mut r: Vec<String> = ["OUTPUT", "-o", "eth0"].map(String::from).to_vec();
    if let Some(ip) = to {
        r.extend(["-d".into(), ip.to_string()]);
    }
    r.extend(
        [
            "-m",
            "comment",
            "--comment",
            &format!("{RULE_COMMENT_PREFIX}{queue}"),
            "-j",
            "NFQUEUE",
            "--queue-num",
            &queue.to_string(),
            "--queue-bypass",
        ]
        .map(String::from),
    );
    r
}

/// The `NFQUEUE` rules in `host`'s namespace (`iptables -S OUTPUT` lines).
pub fn nfqueue_rules(lab: &Lab, host: Host) -> Result<Vec<String>, LabError> {
    let out = iptables(lab.netns(host)?, &["-S".into(), "OUTPUT".into()])?;
    Ok(out
        .lines()
        .filter(|l| l.contains("NFQUEUE"))
        .map(str::to_owned)
        .collect())
}

/// The netfilter queues bound in `host`'s namespace (first column of its
/// `/proc/net/netfilter/nfnetlink_queue`).
pub fn bound_queues(lab: &Lab, host: Host) -> Result<Vec<u16>, LabError> {
    let ns = lab.netns(host)?;
    let out = crate::run_cmd(
        "ip",
        &[
            "netns",
            "exec",
            ns,
            "cat",
            "/proc/net/netfilter/nfnetlink_queue",
        ],
    )?;
    Ok(out
        .lines()
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect())
}

/// Added latency on one host's outgoing packets, while it lives: a
/// delayer process in the host's namespace plus the iptables rules that
/// feed it. [`Delay::stop`] or `Drop` removes both. One at a time per host.
pub struct Delay<'l> {
    lab: &'l Lab,
    host: Host,
    ns: String,
    queue: u16,
    proc: ProcId,
    /// Rules added (each as given after `-A`), removed on stop.
    rules: Vec<Vec<String>>,
    stopped: bool,
}

impl<'l> Delay<'l> {
    /// Starts delaying what `host` sends: runs `tool delayer ...` (the
    /// `cairn-lab` binary) in the host's namespace, waits until it has
    /// bound its queue, then adds the rules. On error everything started
    /// so far is undone.
    pub fn start(
        lab: &'l Lab,
        tool: &Path,
        host: Host,
        spec: &DelaySpec,
    ) -> Result<Delay<'l>, LabError> {
        spec.validate()?;
        let ns = lab.netns(host)?.to_owned();
        let mut dsts = Vec::with_capacity(spec.to.len());
        for &h in &spec.to {
            if h == host {
                return Err(LabError::Invalid(format!(
                    "host {host} cannot delay packets to itself"
                )));
            }
            dsts.push(Some(lab.addr(h)?));
        }
        if dsts.is_empty() {
            dsts.push(None);
        }
        // A packet accepted by one delayer skips the rest of the chain, so
        // a second set of rules would silently do nothing: refuse it.
        let existing: Vec<String> = nfqueue_rules(lab, host)?
            .into_iter()
            .filter(|r| r.contains(RULE_COMMENT_PREFIX))
            .collect();
        if !existing.is_empty() {
            return Err(LabError::Invalid(format!(
                "host {host} already has a delay (one at a time): {existing:?}"
            )));
        }
        let queue = next_queue();
        let proc = lab.spawn(host, &tool.to_string_lossy(), &spec.args(queue))?;
        let mut delay = Delay {
            lab,
            host,
            ns,
            queue,
            proc,
            rules: Vec::new(),
            stopped: false,
        };
        // From here on, Drop undoes whatever was done.
        delay.wait_bound(BIND_WAIT)?;
        for dst in dsts {
            let rule = rule_spec(queue, dst);
            let mut add = vec!["-A".to_owned()];
            add.extend(rule.iter().cloned());
            iptables(&delay.ns, &add)?;
            delay.rules.push(rule);
        }
        Ok(delay)
    }

    /// [`Delay::start`] on node `node` of a cluster (all it sends: to its
    /// peers and to the client host).
    pub fn on_node(
        cluster: &Cluster<'l>,
        node: usize,
        spec: &DelaySpec,
    ) -> Result<Delay<'l>, LabError> {
        if node >= cluster.nodes() {
            return Err(LabError::NoSuchHost(node));
        }
        Delay::start(cluster.lab(), &cluster.spec().tool, node, spec)
    }

    fn wait_bound(&self, limit: Duration) -> Result<(), LabError> {
        let deadline = Instant::now() + limit;
        loop {
            if self.lab.log(self.proc).contains(r#""delayer":"bound""#) {
                return Ok(());
            }
            if let Some(status) = self.lab.try_wait(self.proc)? {
                return Err(LabError::Command {
                    cmd: format!("cairn-lab delayer --queue {} in {}", self.queue, self.ns),
                    status: status.to_string(),
                    stderr: self.lab.log(self.proc).trim().to_owned(),
                });
            }
            if Instant::now() >= deadline {
                return Err(LabError::Timeout(format!(
                    "delayer on queue {} in {} did not bind within {limit:?}: {}",
                    self.queue,
                    self.ns,
                    self.lab.log(self.proc)
                )));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The host whose packets are delayed.
    pub fn host(&self) -> Host {
        self.host
    }

    /// The netfilter queue number.
    pub fn queue(&self) -> u16 {
        self.queue
    }

    /// The delayer process.
    pub fn proc(&self) -> ProcId {
        self.proc
    }

    /// The delayer's OS PID.
    pub fn pid(&self) -> Result<u32, LabError> {
        self.lab.pid(self.proc)
    }

    /// Whether the delayer still runs (it may have reached its lifetime,
    /// or been killed: its rules then let packets pass undelayed).
    pub fn is_running(&self) -> bool {
        matches!(self.lab.try_wait(self.proc), Ok(None))
    }

    /// Removes the rules, stops the delayer (SIGTERM: it releases what it
    /// holds) and returns its counters.
    pub fn stop(mut self) -> Result<DelayStats, LabError> {
        self.shutdown()?;
        let log = self.lab.log(self.proc);
        log.lines()
            .rev()
            .find_map(DelayStats::parse)
            .ok_or_else(|| LabError::Invalid(format!("the delayer printed no counters: {log}")))
    }

    /// Rules first (no new packets are queued), then the process. Returns
    /// the first error after trying everything. Idempotent.
    fn shutdown(&mut self) -> Result<(), LabError> {
        if self.stopped {
            return Ok(());
        }
        self.stopped = true;
        let mut first = None;
        for rule in std::mem::take(&mut self.rules) {
            let mut del = vec!["-D".to_owned()];
            del.extend(rule);
            if let Err(e) = iptables(&self.ns, &del) {
                first.get_or_insert(e);
            }
        }
        match self.lab.try_wait(self.proc) {
            Ok(Some(_)) => {}
            Ok(None) => {
                if let Ok(pid) = self.lab.pid(self.proc) {
                    let _ = crate::kill_pid(pid, libc::SIGTERM);
                }
                match self.lab.wait_timeout(self.proc, STOP_WAIT) {
                    Ok(Some(_)) => {}
                    Ok(None) => {
                        let _ = self.lab.kill(self.proc);
                        first.get_or_insert(LabError::Timeout(format!(
                            "delayer on queue {} in {} ignored SIGTERM for {STOP_WAIT:?}; killed",
                            self.queue, self.ns
                        )));
                    }
                    Err(e) => {
                        first.get_or_insert(e);
                    }
                }
            }
            Err(e) => {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }
}

impl Drop for Delay<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            eprintln!(
                "cairn-lab: stopping the delay on {} (queue {}) failed: {e}",
                self.ns, self.queue
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(sched: &mut Scheduler, arrivals: &[u64]) -> Vec<(u32, Admit)> {
        arrivals
            .iter()
            .enumerate()
            .map(|(i, &t)| (i as u32, sched.admit(i as u32, t)))
            .collect()
    }

    #[test]
    fn packets_are_held_delay_plus_minus_jitter_and_keep_their_order() {
        let mut s = Scheduler::new(100, 10, 0.0, 10_000, 7);
        // Sparse arrivals (every 50 ms): order never forces a later release.
        let arrivals: Vec<u64> = (0..2000).map(|i| i * 50_000).collect();
        let mut last = 0;
        let mut holds = Vec::new();
        for (id, admit) in run(&mut s, &arrivals) {
            let Admit::Held { release_us } = admit else {
                panic!("packet {id} dropped without loss or cap: {admit:?}");
            };
            let hold = release_us - arrivals[id as usize];
            assert!((90_000..=110_000).contains(&hold), "hold {hold} µs");
            assert!(release_us >= last, "packet {id} overtook the one ahead");
            last = release_us;
            holds.push(hold);
        }
        // The jitter is really used, both ways.
        assert!(holds.iter().any(|&h| h < 95_000));
        assert!(holds.iter().any(|&h| h > 105_000));
        // Dense arrivals: jitter would reorder, the order is kept instead.
        let mut s = Scheduler::new(100, 50, 0.0, 10_000, 7);
        let mut last = 0;
        for (id, admit) in run(&mut s, &(0..500).collect::<Vec<u64>>()) {
            let Admit::Held { release_us } = admit else {
                panic!("{id}: {admit:?}");
            };
            assert!(release_us >= last);
            assert!(release_us >= u64::from(id) + 50_000);
            last = release_us;
        }
    }

    #[test]
    fn only_due_packets_are_released_in_arrival_order() {
        let mut s = Scheduler::new(100, 0, 0.0, 100, 1);
        for (i, t) in [0u64, 10_000, 20_000].into_iter().enumerate() {
            s.admit(i as u32 + 5, t);
        }
        assert_eq!(s.next_release_us(), Some(100_000));
        assert_eq!(s.pop_due(99_999), None);
        assert_eq!(s.pop_due(110_000), Some(5));
        assert_eq!(s.pop_due(110_000), Some(6));
        assert_eq!(s.pop_due(110_000), None);
        assert_eq!(s.held_len(), 1);
        // Stopping releases the rest early, counted apart.
        assert_eq!(s.pop_any(110_000), Some(7));
        assert_eq!(s.pop_any(110_000), None);
        let c = s.counts();
        assert_eq!((c.received, c.released, c.released_early), (3, 2, 1));
        assert_eq!(c.hold_us_min, Some(100_000));
        assert_eq!(c.hold_us_max, 110_000);
        assert_eq!(c.held_max, 3);
    }

    #[test]
    fn the_cap_drops_and_counts_packets_beyond_it() {
        let mut s = Scheduler::new(100, 0, 0.0, 3, 1);
        let admits: Vec<Admit> = run(&mut s, &[0, 1, 2, 3, 4])
            .into_iter()
            .map(|(_, a)| a)
            .collect();
        assert!(matches!(admits[2], Admit::Held { .. }));
        assert_eq!(admits[3..], [Admit::DroppedCap, Admit::DroppedCap]);
        assert_eq!(s.counts().dropped_cap, 2);
        assert_eq!(s.held_len(), 3);
        // Room again once one is released.
        assert!(s.pop_due(200_000).is_some());
        assert!(matches!(s.admit(9, 200_000), Admit::Held { .. }));
    }

    #[test]
    fn loss_is_seeded_and_about_the_share_asked() {
        let draw = |seed| {
            let mut s = Scheduler::new(0, 0, 0.3, CAP_MAX, seed);
            let v: Vec<bool> = (0..10_000u32)
                .map(|i| {
                    let lost = s.admit(i, 0) == Admit::DroppedLoss;
                    let _ = s.pop_due(0);
                    lost
                })
                .collect();
            v
        };
        let a = draw(3);
        assert_eq!(a, draw(3), "same seed, same losses");
        assert_ne!(a, draw(4), "another seed, other losses");
        let lost = a.iter().filter(|&&l| l).count();
        assert!((2500..=3500).contains(&lost), "lost {lost} of 10000 at 30%");
        let mut none = Scheduler::new(0, 0, 0.0, CAP_MAX, 1);
        let mut all = Scheduler::new(0, 0, 1.0, CAP_MAX, 1);
        for i in 0..1000 {
            assert!(matches!(none.admit(i, 0), Admit::Held { .. }));
            assert_eq!(all.admit(i, 0), Admit::DroppedLoss);
            let _ = none.pop_due(0);
        }
    }

    #[test]
    fn verdict_messages_have_the_netlink_layout() {
        let mut out = Vec::new();
        push_verdict(&mut out, 0x0102, 0xAABB_CCDD, VERDICT_ACCEPT);
        push_verdict(&mut out, 7, 1, VERDICT_DROP);
        assert_eq!(out.len(), 64);
        let m = &out[..32];
        assert_eq!(u32_at(m, 0), Some(32));
        assert_eq!(u16_at(m, 4), Some(0x0301)); // NFNL_SUBSYS_QUEUE, VERDICT
        assert_eq!(u16_at(m, 6), Some(NLM_F_REQUEST));
        assert_eq!(&m[16..20], &[0, 0, 0x01, 0x02]); // AF_UNSPEC, v0, be16 queue
        assert_eq!(u16_at(m, 20), Some(12)); // attribute length
        assert_eq!(u16_at(m, 22), Some(NFQA_VERDICT_HDR));
        assert_eq!(&m[24..28], &1u32.to_be_bytes());
        assert_eq!(&m[28..32], &0xAABB_CCDDu32.to_be_bytes());
        assert_eq!(&out[32 + 24..32 + 28], &0u32.to_be_bytes());
    }

    fn packet_msg(id: u32, extra_attr_first: bool) -> Vec<u8> {
        let mut hdr = [0u8; 7];
        hdr[..4].copy_from_slice(&id.to_be_bytes());
        let mark = 5u32.to_be_bytes();
        let mut attrs: Vec<(u16, &[u8])> = vec![(NFQA_PACKET_HDR, &hdr)];
        if extra_attr_first {
            attrs.insert(0, (3, &mark)); // NFQA_MARK
        }
        let mut out = Vec::new();
        push_msg(&mut out, NFQNL_MSG_PACKET, 0, 0, 1, &attrs);
        out
    }

    fn ack_msg(seq: u32, errno: i32) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend_from_slice(&36u32.to_ne_bytes());
        m.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
        m.extend_from_slice(&[0; 10]);
        m.extend_from_slice(&(-errno).to_ne_bytes());
        // The request's header: len, type, flags, seq, pid.
        m.extend_from_slice(&[0; 8]);
        m.extend_from_slice(&seq.to_ne_bytes());
        m.extend_from_slice(&[0; 4]);
        m
    }

    #[test]
    fn datagrams_parse_into_packets_and_acks_and_garbage_is_ignored() {
        let mut data = packet_msg(41, false);
        data.extend(packet_msg(42, true));
        data.extend(ack_msg(9, 0));
        data.extend(ack_msg(10, libc::EBUSY));
        let mut got = Vec::new();
        parse_datagram(&data, |m| got.push(m));
        assert_eq!(
            got,
            [
                NlMsg::Packet(41),
                NlMsg::Packet(42),
                NlMsg::Ack { seq: 9, errno: 0 },
                NlMsg::Ack {
                    seq: 10,
                    errno: libc::EBUSY
                },
            ]
        );
        // Every truncation of the datagram parses without panicking, and
        // never yields a message that was not complete.
        for cut in 0..data.len() {
            let mut n = 0;
            parse_datagram(&data[..cut], |_| n += 1);
            assert!(n <= got.len());
        }
        // A length field pointing past the end, or below the header size.
        let mut bad = packet_msg(1, false);
        bad[..4].copy_from_slice(&1000u32.to_ne_bytes());
        parse_datagram(&bad, |m| panic!("parsed {m:?} from a bad length"));
        bad[..4].copy_from_slice(&4u32.to_ne_bytes());
        parse_datagram(&bad, |m| panic!("parsed {m:?} from a bad length"));
    }

    #[test]
    fn specs_are_bounded_and_render_delayer_arguments() {
        let s = DelaySpec::new(100, 10);
        assert!(s.validate().is_ok());
        let args = s.args(3);
        assert_eq!(args[..3], ["delayer", "--queue", "3"]);
        assert!(args.windows(2).any(|w| w == ["--jitter-ms", "10"]));
        for bad in [
            DelaySpec::new(DELAY_MS_MAX + 1, 0),
            DelaySpec::new(100, DELAY_MS_MAX + 1),
            DelaySpec {
                loss: 1.5,
                ..DelaySpec::new(1, 0)
            },
            DelaySpec {
                loss: f64::NAN,
                ..DelaySpec::new(1, 0)
            },
            DelaySpec {
                cap: 0,
                ..DelaySpec::new(1, 0)
            },
            DelaySpec {
                cap: CAP_MAX + 1,
                ..DelaySpec::new(1, 0)
            },
            DelaySpec {
                lifetime_ms: 0,
                ..DelaySpec::new(1, 0)
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?} accepted");
        }
        let rule = rule_spec(12, Some(Ipv4Addr::new(10, 213, 0, 2))).join(" ");
        assert_eq!(
            rule,
            "OUTPUT -o eth0 -d 10.213.0.2 -m comment --comment cairn-delay-12 -j NFQUEUE --queue-num 12 --queue-bypass"
        );
    }

    #[test]
    fn stats_lines_parse() {
        let line = r#"{"delayer":"stopped","queue":1,"reason":"signal","received":10,"released":8,"released_early":1,"dropped_loss":1,"dropped_cap":0,"held_max":4,"hold_us_min":90000,"hold_us_max":110000,"hold_us_mean":100000,"verdict_errors":0,"still_held":0}"#;
        let s = DelayStats::parse(line).expect("parses");
        assert_eq!(s.reason, "signal");
        assert_eq!((s.received, s.released, s.held_max), (10, 8, 4));
        assert_eq!(s.hold_us_min, 90_000);
        assert_eq!(DelayStats::parse(r#"{"delayer":"bound","queue":1}"#), None);
        assert_eq!(DelayStats::parse("not json"), None);
    }
}
