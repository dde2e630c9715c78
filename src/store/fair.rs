//! The store's bounded reading buffer, shared fairly between devices: one queue per device,
//! one bound for all. While there is room every reading is kept. When the buffer is full, the
//! reading that goes is the oldest of the device with the most readings buffered (which may be
//! the newcomer's own device): a device that floods, or simply sends most, loses its own
//! excess first, and a device within its fair share (the bound divided by the devices that
//! have readings buffered) loses nothing. Drops are counted per device.
//!
//! Pure data, no lock of its own: it lives inside the store's queue mutex.
//!
//! Memory: the readings live in one slab of slots, each device's readings a linked list
//! through it, freed slots reused. The slab grows as readings arrive and never past the bound
//! (plus a failed batch put back, see [`FairBuffer::requeue`]), so the buffer costs at most
//! `cap` slots however the readings are spread over devices and however that spread changes
//! (per-device double-ended queues each kept the capacity of their own largest backlog, up to
//! twice the bound in all, and fragmented the heap as they grew).

use crate::clock::Mono;
use crate::model::{
    BedIdx, DeviceIdx, DeviceTime, Flags, Invalid, Measurement, Metric, Observation, Value,
};

/// End of a list.
const NIL: u32 = u32::MAX;

/// An [`Observation`] as the buffer holds it: the same fields, packed without padding (the
/// 64-bit ones as pairs of 32-bit halves so that the row and its slot's link align on 4
/// bytes): 56 bytes where an `Observation` takes 72. Converting back gives the same value.
#[derive(Debug, Clone, Copy)]
struct Row {
    /// The valid number's bits, or the invalid reason's index.
    value: [u32; 2],
    received_ms: [u32; 2],
    mono: [u32; 2],
    bed_seq: [u32; 2],
    flags: Flags,
    device_time: Option<DeviceTime>,
    bed: u16,
    device: u16,
    metric: Metric,
    /// `INVALID` and `SIMULATED`.
    bits: u8,
}

const INVALID: u8 = 1;
const SIMULATED: u8 = 2;

const fn split(v: u64) -> [u32; 2] {
    [(v >> 32) as u32, v as u32]
}

const fn join(h: [u32; 2]) -> u64 {
    ((h[0] as u64) << 32) | h[1] as u64
}

impl Row {
    fn pack(o: &Observation) -> Row {
        let (value, invalid) = match o.m.value {
            Value::Valid(v) => (v.to_bits(), 0),
            Value::Invalid(r) => (r.index() as u64, INVALID),
        };
        Row {
            value: split(value),
            received_ms: split(o.received_ms as u64),
            mono: split(o.mono.0),
            bed_seq: split(o.bed_seq),
            flags: o.m.flags,
            device_time: o.m.device_time,
            bed: o.bed.0,
            device: o.device.0,
            metric: o.m.metric,
            bits: invalid | if o.simulated { SIMULATED } else { 0 },
        }
    }

    fn unpack(&self) -> Observation {
        let value = if self.bits & INVALID == 0 {
            Value::Valid(f64::from_bits(join(self.value)))
        } else {
            let i = usize::try_from(join(self.value)).unwrap_or(0);
            Value::Invalid(Invalid::ALL.get(i).copied().unwrap_or(Invalid::NoValue))
        };
        Observation {
            bed: BedIdx(self.bed),
            device: DeviceIdx(self.device),
            m: Measurement {
                metric: self.metric,
                value,
                flags: self.flags,
                device_time: self.device_time,
            },
            received_ms: join(self.received_ms) as i64,
            mono: Mono(join(self.mono)),
            bed_seq: join(self.bed_seq),
            simulated: self.bits & SIMULATED != 0,
        }
    }
}

/// One buffered reading and the next of its device.
#[derive(Debug, Clone, Copy)]
struct Slot {
    row: Row,
    next: u32,
}

/// One device's readings: oldest at `head`, newest at `tail`.
#[derive(Debug, Clone, Copy)]
struct List {
    head: u32,
    tail: u32,
    len: usize,
}

impl Default for List {
    fn default() -> List {
        List {
            head: NIL,
            tail: NIL,
            len: 0,
        }
    }
}

/// The buffer. Readings of one device keep their order; devices are drained one after the
/// other (each reading carries its own stamps and per-bed sequence number).
#[derive(Debug, Default)]
pub(crate) struct FairBuffer {
    slots: Vec<Slot>,
    /// Free slots, linked through `next`.
    free: u32,
    /// By device index, grown on demand.
    lists: Vec<List>,
    len: usize,
    cap: usize,
    /// Readings dropped, by device index.
    dropped: Vec<u64>,
}

impl FairBuffer {
    /// An empty buffer holding `cap` readings at most (at least 1, at most `u32::MAX - 1`).
    pub fn new(cap: usize) -> FairBuffer {
        FairBuffer {
            slots: Vec::new(),
            free: NIL,
            lists: Vec::new(),
            len: 0,
            cap: cap.clamp(1, (NIL - 1) as usize),
            dropped: Vec::new(),
        }
    }

    /// Readings held.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Readings dropped so far, by device index (devices that never lost one may be absent).
    pub fn dropped(&self) -> &[u64] {
        &self.dropped
    }

    fn list(&mut self, d: DeviceIdx) -> usize {
        let i = usize::from(d.0);
        if self.lists.len() <= i {
            self.lists.resize_with(i + 1, List::default);
        }
        i
    }

    /// A slot holding `obs`, its `next` unset: a freed one, or a new one (the slab grows by
    /// doubling, never past the bound unless a failed batch came back).
    fn alloc(&mut self, obs: Observation) -> u32 {
        if self.free != NIL {
            let at = self.free;
            let slot = &mut self.slots[at as usize];
            self.free = slot.next;
            *slot = Slot {
                row: Row::pack(&obs),
                next: NIL,
            };
            return at;
        }
        if self.slots.len() == self.slots.capacity() {
            let room = self.cap.saturating_sub(self.slots.len());
            let grow = self.slots.capacity().max(1024).min(room).max(1);
            self.slots.reserve_exact(grow);
        }
        let at = u32::try_from(self.slots.len()).unwrap_or(NIL);
        self.slots.push(Slot {
            row: Row::pack(&obs),
            next: NIL,
        });
        at
    }

    fn release(&mut self, at: u32) {
        self.slots[at as usize].next = self.free;
        self.free = at;
    }

    fn push_back_of(&mut self, i: usize, obs: Observation) {
        let at = self.alloc(obs);
        let l = &mut self.lists[i];
        if l.tail == NIL {
            l.head = at;
        } else {
            self.slots[l.tail as usize].next = at;
        }
        l.tail = at;
        l.len += 1;
        self.len += 1;
    }

    fn push_front_of(&mut self, i: usize, obs: Observation) {
        let at = self.alloc(obs);
        let l = &mut self.lists[i];
        self.slots[at as usize].next = l.head;
        if l.head == NIL {
            l.tail = at;
        }
        l.head = at;
        l.len += 1;
        self.len += 1;
    }

    fn pop_front_of(&mut self, i: usize) -> Option<Observation> {
        let l = self.lists.get_mut(i)?;
        if l.head == NIL {
            return None;
        }
        let at = l.head;
        let slot = self.slots[at as usize];
        l.head = slot.next;
        if l.head == NIL {
            l.tail = NIL;
        }
        l.len -= 1;
        self.len -= 1;
        self.release(at);
        Some(slot.row.unpack())
    }

    /// The device to lose a reading: the one with the most buffered, preferring `own` on a
    /// tie (a newcomer never takes the place of an equal).
    fn victim(&self, own: Option<DeviceIdx>) -> Option<usize> {
        let own_len = own
            .and_then(|d| self.lists.get(usize::from(d.0)))
            .map_or(0, |l| l.len);
        let (i, longest) = self
            .lists
            .iter()
            .enumerate()
            .max_by_key(|(i, l)| (l.len, std::cmp::Reverse(*i)))?;
        if longest.len == 0 {
            return None;
        }
        match own {
            Some(d) if own_len == longest.len => Some(usize::from(d.0)),
            _ => Some(i),
        }
    }

    fn drop_oldest_of(&mut self, i: usize) -> Option<DeviceIdx> {
        self.pop_front_of(i)?;
        if self.dropped.len() <= i {
            self.dropped.resize(i + 1, 0);
        }
        self.dropped[i] += 1;
        u16::try_from(i).ok().map(DeviceIdx)
    }

    /// Adds a reading. When the buffer is full, first drops the oldest reading of the device
    /// with the most buffered (see the module doc) and returns that device.
    pub fn push(&mut self, obs: Observation) -> Option<DeviceIdx> {
        let mut lost = None;
        if self.len >= self.cap
            && let Some(v) = self.victim(Some(obs.device))
        {
            lost = self.drop_oldest_of(v);
        }
        let i = self.list(obs.device);
        self.push_back_of(i, obs);
        lost
    }

    /// Moves every reading into `out`, device after device, oldest first.
    #[cfg(test)]
    pub fn drain_into(&mut self, out: &mut Vec<Observation>) {
        self.drain_at_most(out, usize::MAX);
    }

    /// Moves up to `max` readings into `out`, device after device, each device's oldest
    /// first; when not all fit, every device with readings buffered gets an equal share (what
    /// one leaves unused goes to the others). When all fit, each device's readings come in
    /// one run (the writer packs a run into as few rows as it can: schema v7).
    pub fn drain_at_most(&mut self, out: &mut Vec<Observation>, max: usize) {
        let all = max >= self.len;
        let mut left = max.min(self.len);
        out.reserve(left);
        while left > 0 {
            let busy = self.lists.iter().filter(|l| l.len > 0).count();
            if busy == 0 {
                break;
            }
            let share = if all { left } else { (left / busy).max(1) };
            for i in 0..self.lists.len() {
                let n = share.min(self.lists[i].len).min(left);
                for _ in 0..n {
                    if let Some(obs) = self.pop_front_of(i) {
                        out.push(obs);
                    }
                }
                left -= n;
                if left == 0 {
                    break;
                }
            }
        }
        if self.len == 0 {
            // Nothing buffered: the slots are all free, forget their order.
            self.slots.clear();
            self.free = NIL;
        }
    }

    /// Puts readings that could not be written back in front of their devices' queues, then
    /// restores the bound the fair way. Returns how many readings were dropped, and the device
    /// that lost the last one.
    pub fn requeue(&mut self, batch: &[Observation]) -> (u64, Option<DeviceIdx>) {
        // Room for the whole batch at once (the slab may pass the bound until it is restored).
        self.slots.reserve_exact(batch.len());
        for obs in batch.iter().rev() {
            let i = self.list(obs.device);
            self.push_front_of(i, *obs);
        }
        let (mut n, mut last) = (0, None);
        while self.len > self.cap {
            let Some(v) = self.victim(None) else { break };
            let Some(d) = self.drop_oldest_of(v) else {
                break;
            };
            n += 1;
            last = Some(d);
        }
        (n, last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs(device: u16, seq: u64) -> Observation {
        Observation {
            bed: BedIdx(device),
            device: DeviceIdx(device),
            m: Measurement::new(Metric::Spo2, 97.0, Flags::default()),
            received_ms: i64::try_from(seq).unwrap(),
            mono: Mono(seq),
            bed_seq: seq,
            simulated: false,
        }
    }

    fn count(b: &FairBuffer, device: u16) -> usize {
        b.lists.get(usize::from(device)).map_or(0, |l| l.len)
    }

    #[test]
    fn within_the_bound_nothing_is_dropped() {
        let mut b = FairBuffer::new(10);
        for s in 0..10 {
            assert_eq!(b.push(obs(u16::try_from(s % 3).unwrap(), s)), None);
        }
        assert_eq!(b.len(), 10);
        assert!(b.dropped().iter().all(|d| *d == 0));
    }

    #[test]
    fn a_flooding_device_loses_its_own_oldest_readings_and_a_normal_one_loses_none() {
        let mut b = FairBuffer::new(100);
        let mut normal = 0;
        for s in 0..10_000u64 {
            // Device 1 floods; device 0 sends one reading for every thousand of device 1.
            assert_ne!(b.push(obs(1, s)), Some(DeviceIdx(0)));
            if s % 1000 == 0 {
                assert_ne!(b.push(obs(0, s)), Some(DeviceIdx(0)));
                normal += 1;
            }
        }
        assert_eq!(b.len(), 100);
        assert_eq!(count(&b, 0), normal, "every normal reading kept");
        assert_eq!(b.dropped().first().copied().unwrap_or(0), 0);
        let flood_dropped = b.dropped()[1];
        assert_eq!(flood_dropped, 10_000 + normal as u64 - 100);
        // The flooder kept its newest readings.
        let mut out = Vec::new();
        b.drain_into(&mut out);
        let newest = out
            .iter()
            .filter(|o| o.device.0 == 1)
            .map(|o| o.bed_seq)
            .max();
        assert_eq!(newest, Some(9_999));
        assert!(b.is_empty());
    }

    #[test]
    fn when_every_device_is_over_its_share_each_keeps_an_equal_part() {
        let mut b = FairBuffer::new(90);
        for s in 0..3_000u64 {
            b.push(obs(u16::try_from(s % 3).unwrap(), s));
        }
        assert_eq!((count(&b, 0), count(&b, 1), count(&b, 2)), (30, 30, 30));
        // One device bursting past the others only ever takes from itself once it is the
        // largest.
        for s in 0..50 {
            b.push(obs(2, 10_000 + s));
        }
        assert_eq!((count(&b, 0), count(&b, 1), count(&b, 2)), (30, 30, 30));
    }

    #[test]
    fn a_failed_batch_goes_back_in_front_and_the_bound_is_restored_from_the_largest() {
        let mut b = FairBuffer::new(10);
        for s in 0..6 {
            b.push(obs(1, s));
        }
        let mut batch = Vec::new();
        b.drain_into(&mut batch);
        // Meanwhile: 2 readings of device 0, 4 more of device 1.
        b.push(obs(0, 100));
        b.push(obs(0, 101));
        for s in 6..10 {
            b.push(obs(1, s));
        }
        assert_eq!(b.requeue(&batch), (2, Some(DeviceIdx(1))));
        assert_eq!(b.len(), 10);
        assert_eq!((count(&b, 0), count(&b, 1)), (2, 8));
        let mut out = Vec::new();
        b.drain_into(&mut out);
        let seqs: Vec<u64> = out.iter().map(|o| o.bed_seq).collect();
        assert_eq!(
            seqs,
            [100, 101, 2, 3, 4, 5, 6, 7, 8, 9],
            "oldest of the largest went"
        );
    }

    #[test]
    fn a_buffered_reading_comes_back_exactly_as_it_went_in_in_fewer_bytes() {
        let mut flags = Flags::default();
        flags.set_cuff_error(0x1234);
        let mut cases = vec![Observation {
            bed: BedIdx(7),
            device: DeviceIdx(65_535),
            m: Measurement {
                metric: Metric::Pleth,
                value: Value::Valid(-0.0),
                flags,
                device_time: Some(DeviceTime {
                    year: 2026,
                    month: 12,
                    day: 2,
                    hour: 23,
                    minute: 59,
                    second: 60,
                }),
            },
            received_ms: -1,
            mono: Mono(u64::MAX),
            bed_seq: u64::MAX - 1,
            simulated: true,
        }];
        for (i, r) in Invalid::ALL.into_iter().enumerate() {
            let mut o = obs(u16::try_from(i).unwrap(), 1 << 40);
            o.m.value = Value::Invalid(r);
            o.received_ms = i64::MIN;
            cases.push(o);
        }
        cases.push(obs(3, 9));
        let mut b = FairBuffer::new(100);
        for o in &cases {
            assert_eq!(Row::pack(o).unpack(), *o);
            b.push(*o);
        }
        let mut out = Vec::new();
        b.drain_into(&mut out);
        assert_eq!(out.len(), cases.len());
        for o in &cases {
            assert!(out.contains(o), "{o:?}");
        }
        assert!(std::mem::size_of::<Slot>() < std::mem::size_of::<Observation>());
        assert_eq!(std::mem::size_of::<Slot>(), 60);
    }

    #[test]
    fn the_slab_never_outgrows_the_bound_however_the_readings_move_between_devices() {
        let cap = 5_000;
        let mut b = FairBuffer::new(cap);
        let mut out = Vec::new();
        // Each round one device holds nearly everything, then the writer takes a part.
        for round in 0..40u64 {
            let d = u16::try_from(round % 7).unwrap();
            for s in 0..6_000 {
                b.push(obs(d, round * 10_000 + s));
            }
            out.clear();
            b.drain_at_most(&mut out, 1_500);
            assert!(b.slots.capacity() <= cap, "{} slots", b.slots.capacity());
        }
        assert_eq!(b.len(), cap - 1_500);
        // Each device still yields its readings oldest first.
        out.clear();
        b.drain_into(&mut out);
        for d in 0..7u16 {
            let seqs: Vec<u64> = out
                .iter()
                .filter(|o| o.device.0 == d)
                .map(|o| o.bed_seq)
                .collect();
            assert!(seqs.windows(2).all(|w| w[0] < w[1]), "device {d} in order");
        }
        assert!(b.is_empty());
    }

    #[test]
    fn a_partial_drain_shares_between_devices_and_keeps_each_devices_order() {
        let mut b = FairBuffer::new(100);
        for s in 0..40 {
            b.push(obs(0, s));
        }
        for s in 0..4 {
            b.push(obs(1, 100 + s));
        }
        let mut out = Vec::new();
        b.drain_at_most(&mut out, 10);
        let seqs: Vec<u64> = out.iter().map(|o| o.bed_seq).collect();
        // Device 1's four, and device 0's oldest six (its share and what device 1 left).
        assert_eq!(seqs, [0, 1, 2, 3, 4, 100, 101, 102, 103, 5]);
        assert_eq!((b.len(), count(&b, 0), count(&b, 1)), (34, 34, 0));
        out.clear();
        b.drain_at_most(&mut out, 1_000);
        assert_eq!(out.first().map(|o| o.bed_seq), Some(6));
        assert_eq!(out.len(), 34);
        assert!(b.is_empty());
    }
}
