//! A bed's saved alarm state: what the hub hands the store after a bed's events and reads
//! back at start ([`super::Hub::restore`]).

use crate::alarm::{BedAlarms, BedSnapshot, Now};
use crate::config::Config;
use crate::model::{BedIdx, StoredState};

/// A bed's saved alarm state, as stored in `alarm_state.json`: the engine's snapshot plus the
/// device ids its device indices stood for (so an edited config cannot misattribute an alarm).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(super) struct SavedBed {
    /// An alarm's `device` is a position in this list. Written: the devices the bed's alarms
    /// name, each once (a state is saved often; the whole topology's ids in every one cost a
    /// central-sized config kilobytes per save). States saved before held every device of the
    /// topology, in topology order: read the same way.
    pub(super) devices: Vec<String>,
    #[serde(flatten)]
    pub(super) snapshot: BedSnapshot,
}

/// A bed's state as the store keeps it (`None` only if it cannot be serialized, which plain
/// numbers and strings cannot fail).
pub(super) fn saved_state(cfg: &Config, engine: &BedAlarms, now: Now) -> Option<StoredState> {
    saved_snapshot(cfg, engine.bed(), engine.snapshot(now), now)
}

/// [`saved_state`] of a snapshot taken already (so that it is serialized outside the bed's
/// lock).
pub(super) fn saved_snapshot(
    cfg: &Config,
    bed: BedIdx,
    snapshot: BedSnapshot,
    now: Now,
) -> Option<StoredState> {
    let mut snapshot = snapshot;
    let mut devices: Vec<String> = Vec::new();
    for a in &mut snapshot.alarms {
        let Some(d) = a.device else { continue };
        // An index outside the topology (cannot happen) is saved as "", which names no device.
        let id = cfg
            .devices
            .get(usize::from(d))
            .map_or("", |b| b.id.as_str());
        let at = devices.iter().position(|x| x == id).unwrap_or_else(|| {
            devices.push(id.to_owned());
            devices.len() - 1
        });
        a.device = u16::try_from(at).ok();
    }
    let saved = SavedBed { devices, snapshot };
    match serde_json::to_string(&saved) {
        Ok(json) => Some(StoredState {
            bed: cfg.bed(bed).id.clone(),
            at_ms: now.wall_ms,
            json,
        }),
        Err(e) => {
            tracing::error!(error = %e, "alarm state could not be serialized");
            None
        }
    }
}
