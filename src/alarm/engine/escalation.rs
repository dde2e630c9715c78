//! Notifications of a raised alarm: a page at level 0 when it is raised (or rises in
//! priority), re-notify and escalation to the next level on the [`EscalationPolicy`]'s
//! schedule, and the page limit that keeps a flapping condition from paging every cycle.
//!
//! [`EscalationPolicy`]: crate::model::EscalationPolicy

use super::{Ctx, Escalation, Slot};
use crate::alarm::{Alarm, AlarmEvent, EventKind};

/// Starts notifications for a just-raised (or just-risen-in-priority) alarm: a page at level 0
/// now, unless the page limit holds it back (then when the window ends).
pub(super) fn esc_start(ctx: &Ctx, slot: &mut Slot, out: &mut Vec<AlarmEvent>) {
    let Some(a) = slot.alarm else { return };
    slot.esc = Escalation {
        raised: ctx.now.mono,
        level: 0,
        last: ctx.now.mono,
        next: None,
    };
    if ctx.policy.escalation.of(a.priority).notify {
        esc_page(ctx, slot, a, out);
    }
}

/// A page is due for `a`: sends it (and schedules the next) or, within the page limit of the
/// slot's condition, holds it until the window ends.
pub(super) fn esc_page(ctx: &Ctx, slot: &mut Slot, a: Alarm, out: &mut Vec<AlarmEvent>) {
    let e = &ctx.policy.escalation;
    let now = ctx.now.mono;
    if let Some((t, p)) = slot.last_page
        && p >= a.priority
    {
        let open = t.saturating_add(e.page_interval);
        if now < open {
            slot.esc.next = Some(open);
            return;
        }
    }
    let pe = e.of(a.priority);
    let elapsed = now.since(slot.esc.raised);
    // Never lower: an escalation restored after a restart keeps the level it had reached.
    slot.esc.level = pe.level_at(elapsed).max(slot.esc.level);
    slot.esc.last = now;
    slot.last_page = Some((now, a.priority));
    out.push(ctx.event(
        EventKind::Notify {
            level: slot.esc.level,
        },
        Some(a),
        None,
    ));
    let raised = slot.esc.raised;
    slot.esc.next = pe.next_after(elapsed).map(|d| raised.saturating_add(d));
}

pub(super) fn esc_tick(ctx: &Ctx, slot: &mut Slot, out: &mut Vec<AlarmEvent>) {
    let (Some(a), Some(next)) = (slot.alarm, slot.esc.next) else {
        return;
    };
    if ctx.now.mono < next {
        return;
    }
    esc_page(ctx, slot, a, out);
}
