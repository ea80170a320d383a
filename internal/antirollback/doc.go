// Package antirollback keeps a version floor in the TPM, so an attacker who
// can serve an old, signed, vulnerable image cannot get it installed, and
// measures each installed image into a PCR.
//
// # Floor index
//
// The floor is an ordinary NV index (TPM_NT_ORDINARY), DefaultNVIndex =
// 0x01005545 unless configured, of 8 bytes: the Version, a uint64 big
// endian (16 bits per dotted component, see Version). Attributes:
// OWNERWRITE | WRITEALL | OWNERREAD | AUTHREAD | NO_DA, empty index auth,
// no policy. Anyone may read it (tpm2_nvread -s 8 0x01005545 prints the 8
// bytes); only the owner hierarchy may write it, and the
// engine writes it only to raise it (Raise reads, compares, writes, reads
// back). The index is defined on the first Raise; until then the floor is
// 0 and every version passes.
//
// Why not an NV counter (TPM_NT_COUNTER): a counter only moves by
// TPM2_NV_Increment, one step per command. Reaching 3815.2.0 encoded as
// above would take about 2^60 increments, and any denser encoding would
// cap the versions it can tell apart. Why not a policy that allows only
// raising: TPM2_PolicyNV compares the index's current contents to a
// constant, never to the data being written, so "new ≥ old" cannot be
// expressed; a per-value PolicyCpHash or a PolicyAuthorize key would need
// a signing key on the device, which root could use as well.
//
// # Threat model
//
// Defended: a network attacker or a compromised mirror serving an older,
// correctly signed image (the payload signature passes; the floor check
// refuses it before download). Offline tampering with the disk (wiping or
// restoring the prefs, restoring an old disk image) does not lower the
// floor: it lives in the TPM, not on disk. Not defended: local root with
// the owner password (empty on most hosts) can rewrite or undefine the
// index, and a TPM clear (TPM2_Clear) erases it; such an attacker can
// install anything directly. Set Config.OwnerAuth if the owner hierarchy
// has a password.
//
// # Use
//
//	g, err := antirollback.Open(ctx, antirollback.Config{Require: cfg.RequireTPM, Logf: logf})
//	err = g.Check(ctx, offeredVersion, operatorAllowsRollback) // ErrBelowFloor → code 44
//	rec, err := g.ExtendPCR(ctx, cfg.PCR, imageSHA256)       // at flip; store rec as JSON
//	err = g.Raise(ctx, runningVersion)                       // after boot + mark good
//
// # When the floor moves
//
// Check runs when an update is offered (and before the payload is
// applied). Raise runs only after the new version has booted and been
// marked good, never at download or flip time: otherwise a version that
// fails to boot could not fall back to the previous one. An operator's
// explicit rollback request (allowRollback) waives the check and is
// logged.
//
// # Measured updates
//
// At flip time ExtendPCR extends a configurable PCR of the SHA-256 bank
// with the new image's SHA-256 and returns a PCRRecord (PCR, bank, image
// hash, value before, expected value after = SHA-256(before || image)),
// which the engine writes beside its prefs so attestation can tell which
// image was installed in this boot. Pick a PCR no one else resets or
// extends at that time; 16 (debug) and 23 (application) are resettable.
// Other banks (sha1, sha384) are left as they are.
//
// # No TPM, failing TPM
//
// Real hosts use /dev/tpmrm0 (the kernel resource manager); tests use
// swtpm over TCP (Config.Addr, raw TPM commands, one connection per
// command). Without a TPM device Open logs one line and returns a Guard
// whose Check passes and whose Raise does nothing, unless Config.Require
// is set (then Open fails with ErrNoTPM). A TPM that answers with errors or
// stops answering yields errors wrapping ErrTPM and the TPM's response
// code (tpm2.TPMRC; ErrNVFull for TPM_RC_NV_SPACE); Check logs and skips
// them unless the TPM is required, so updates keep working and the log
// says why.
package antirollback
