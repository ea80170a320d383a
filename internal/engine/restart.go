package engine

import "github.com/abupdate/update_engine/pkg/update1"

// host is what a restart sees besides the record.
type host struct {
	Booted  string               // booted slot
	BootID  string               // this boot ("" = unknown: every start is a new boot)
	Version string               // running version
	Attrs   map[string]SlotAttrs // GPT attributes by slot name
}

// restartPlan is what a restart does.
type restartPlan struct {
	Record Record     // the record to keep (stored when it differs)
	Status update1.Op // IDLE or UPDATED_NEED_REBOOT
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
	p := restartPlan{Record: rec, Status: update1.Idle}
	u := rec.Update
	if u == nil {
		return decideNoUpdate(p, h)
	}
	b := planner{p: p, u: u}
	flipping := u.Phase == PhaseFlipping || u.Phase == PhaseFlipped
	switch {
	case h.Booted == u.Target && flipping:
		return b.outcome(false, "booted the updated slot")
	case h.Booted == u.Target:
		return b.drop("booted the slot that was being written (" + string(u.Phase) + "); the update is dropped")
	case h.Booted != u.Source:
		return b.drop("booted slot " + h.Booted + " is neither the source nor the target of the update")
	}
	// Booted the source slot.
	switch u.Phase {
	case PhaseDownloading:
		b.p.Resume = true
		b.p.Why = "an interrupted download"
		return b.p
	case PhaseVerified, PhasePostinst:
		return b.finish("a verified payload waits for post-install and the flip")
	}
	return b.decideFlip(h)
}

// decideNoUpdate: with no update in flight, only an outcome not yet
// reported may need correcting.
func decideNoUpdate(p restartPlan, h host) restartPlan {
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

// decideFlip decides an update flipping or flipped, on the source slot,
// by the boot and the GPT.
func (b planner) decideFlip(h host) restartPlan {
	u := b.u
	sameBoot := h.BootID != "" && u.BootID == h.BootID
	tgt, src := h.Attrs[u.Target], h.Attrs[u.Source]
	targetNext := tgt.Bootable() && tgt.Priority > src.Priority
	switch {
	case sameBoot && u.Phase == PhaseFlipping:
		return b.finish("killed during the flip; flipping again")
	case sameBoot && targetNext:
		return b.pending("flipped in this boot")
	case sameBoot:
		// Only something outside the engine changes the GPT within a
		// boot without this engine knowing (an operator's cgpt).
		return b.drop("the flip was undone outside the engine; the update is dropped")
	case u.Phase == PhaseFlipping && tgt.Priority == 0:
		// Rebooted (power cut) before the flip reached the disk: the
		// target is still marked unbootable from before its write.
		return b.finish("the flip did not reach the disk before the reboot; flipping again")
	case targetNext:
		// Rebooted without trying the target (a boot stage that did
		// not follow the priorities, or a kexec): it still boots next.
		return b.pending("rebooted, but the updated slot still boots next")
	}
	return b.outcome(true, "rebooted into the old slot: the updated slot failed to boot")
}

// planner builds the plan for the update in flight u (p.Record.Update).
type planner struct {
	p restartPlan
	u *Update
}

// drop forgets the update.
func (b planner) drop(why string) restartPlan {
	b.p.Record.Update = nil
	b.p.Why = why
	return b.p
}

// pending stays in UPDATED_NEED_REBOOT; a flip that landed is flipped.
func (b planner) pending(why string) restartPlan {
	if b.u.Phase == PhaseFlipping { // the flip landed
		b.u.Phase, b.u.AppliedOwed = PhaseFlipped, true
	}
	b.p.Status = update1.UpdatedNeedReboot
	b.p.SendApplied = b.u.AppliedOwed
	b.p.Why = why
	return b.p
}

// outcome ends the update, keeping what the next check reports.
func (b planner) outcome(rollback bool, why string) restartPlan {
	u := b.u
	b.p.Record.Update = nil
	b.p.Record.Report = &Outcome{FromVersion: u.FromVersion, ToVersion: u.ToVersion, Rollback: rollback, FlipTime: u.FlipTime}
	b.p.Why = why
	return b.p
}

// finish runs post-install (again) and flips, without downloading.
func (b planner) finish(why string) restartPlan {
	b.p.Finish = true
	b.p.Why = why
	return b.p
}
