package engine

import "github.com/abupdate/update_engine/internal/status"

// host is what a restart sees besides the record.
type host struct {
	Booted  string               // booted slot
	BootID  string               // this boot ("" = unknown: every start is a new boot)
	Version string               // running version
	Attrs   map[string]SlotAttrs // GPT attributes by slot name
}

// restartPlan is what a restart does.
type restartPlan struct {
	Record Record        // the record to keep (stored when it differs)
	Status status.Update // IDLE or UPDATED_NEED_REBOOT
	// Finish: the payload is in the target slot and verified; run the
	// post-install step (again) and flip, without downloading.
	Finish bool
	// Resume: a download was interrupted; check again soon and resume it
	// when the same payload is offered.
	Resume bool
	// SendApplied: the 3/1 event is owed.
	SendApplied bool
	Why         string // for the log
}

// decideRestart is the whole restart logic: a pure function of the
// record, the GPT attributes, the booted slot, the boot and the running
// version. It never demotes a slot this engine flipped in this boot,
// never reports a rollback unless the machine rebooted and the target
// failed, and never sends a flipped payload to be downloaded again.
func decideRestart(rec Record, h host) restartPlan {
	rec = rec.clone()
	p := restartPlan{Record: rec, Status: status.Idle}
	u := rec.Update
	if u == nil {
		p.Why = "no update in flight"
		if r := p.Record.Report; r != nil && !r.Rollback && r.ToVersion != "" && h.Version == r.FromVersion && h.Version != r.ToVersion {
			// Booted the update, which then failed (its health gate,
			// a crash) before the outcome was reported: the firmware
			// fell back to the old version.
			r.Rollback = true
			p.Why = "back on the version updated from before the update was reported"
		}
		return p
	}
	sameBoot := h.BootID != "" && u.BootID == h.BootID
	tgt, src := h.Attrs[u.Target], h.Attrs[u.Source]
	drop := func(why string) restartPlan {
		p.Record.Update = nil
		p.Why = why
		return p
	}
	pending := func(why string) restartPlan {
		if u.Phase == PhaseFlipping { // the flip landed
			u.Phase, u.AppliedOwed = PhaseFlipped, true
		}
		p.Status = status.UpdatedNeedReboot
		p.SendApplied = u.AppliedOwed
		p.Why = why
		return p
	}
	outcome := func(rollback bool, why string) restartPlan {
		p.Record.Update = nil
		p.Record.Report = &Outcome{FromVersion: u.FromVersion, ToVersion: u.ToVersion, Rollback: rollback, FlipTime: u.FlipTime}
		p.Why = why
		return p
	}
	finish := func(why string) restartPlan {
		p.Finish = true
		p.Why = why
		return p
	}
	flipping := u.Phase == PhaseFlipping || u.Phase == PhaseFlipped

	switch {
	case h.Booted == u.Target && flipping:
		return outcome(false, "booted the updated slot")
	case h.Booted == u.Target:
		return drop("booted the slot that was being written (" + string(u.Phase) + "); the update is dropped")
	case h.Booted != u.Source:
		return drop("booted slot " + h.Booted + " is neither the source nor the target of the update")
	}
	// Booted the source slot.
	switch u.Phase {
	case PhaseDownloading:
		p.Resume = true
		p.Why = "an interrupted download"
		return p
	case PhaseVerified, PhasePostinst:
		return finish("a verified payload waits for post-install and the flip")
	}
	// Flipping or flipped, on the source slot.
	targetNext := tgt.Bootable() && tgt.Priority > src.Priority
	switch {
	case sameBoot && u.Phase == PhaseFlipping:
		return finish("killed during the flip; flipping again")
	case sameBoot && targetNext:
		return pending("flipped in this boot")
	case sameBoot:
		// Only something outside the engine changes the GPT within a
		// boot without this engine knowing (an operator's cgpt).
		return drop("the flip was undone outside the engine; the update is dropped")
	case u.Phase == PhaseFlipping && tgt.Priority == 0:
		// Rebooted (power cut) before the flip reached the disk: the
		// target is still marked unbootable from before its write.
		return finish("the flip did not reach the disk before the reboot; flipping again")
	case targetNext:
		// Rebooted without trying the target (a boot stage that did
		// not follow the priorities, or a kexec): it still boots next.
		return pending("rebooted, but the updated slot still boots next")
	}
	return outcome(true, "rebooted into the old slot: the updated slot failed to boot")
}
