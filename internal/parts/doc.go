// Package parts holds the real parts the daemon wires into the update
// engine (internal/engine): each adapts one package to one of the
// engine's interfaces, over the plain values of internal/update.
//
//	OmahaChecker, OmahaDownloader   pkg/omaha          → engine.Checker, engine.Downloader
//	PayloadApplier                  pkg/payload        → engine.Applier
//	DiskSlots                       internal/slot      → engine.Slots (writes through pkg/cgroup's limit)
//	GuardFloor                      internal/antirollback → engine.Floor, engine.Measurer
//	SlotPostinst, ExecPostinst,     the new image's post-install program → engine.Postinstaller
//	NoPostinst
//
// The engine imports none of them: it holds only the state machine. The
// package imports neither the engine nor the daemon, so the engine's own
// tests run against these real parts.
package parts
