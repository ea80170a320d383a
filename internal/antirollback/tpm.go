package antirollback

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"

	"github.com/google/go-tpm/tpm2"
)

// floorSize is the size of the floor index: the Version, big endian.
const floorSize = 8

// floorAttrs are the attributes of the floor index: an ordinary index,
// written only whole and only with owner authorization, readable by anyone
// (empty index auth) and by the owner, with no dictionary-attack lockout.
var floorAttrs = tpm2.TPMANV{
	OwnerWrite: true,
	WriteAll:   true,
	OwnerRead:  true,
	AuthRead:   true,
	NoDA:       true,
	NT:         tpm2.TPMNTOrdinary,
}

// tpmFloor keeps the floor in an NV index of a real TPM. The sender
// serializes single commands.
type tpmFloor struct {
	s         sender
	index     tpm2.TPMHandle
	ownerAuth []byte

	// raiseMu makes Raise's read, compare, write one step within this
	// process: two interleaved Raises could otherwise write the lower value
	// last.
	raiseMu sync.Mutex
}

func newTPMFloor(s sender, index uint32, ownerAuth []byte) *tpmFloor {
	return &tpmFloor{s: s, index: tpm2.TPMHandle(index), ownerAuth: ownerAuth}
}

func (f *tpmFloor) Close() error { return f.s.Close() }

// tpmErr wraps a failed command on the index: see tpmError.
func tpmErr(op string, index tpm2.TPMHandle, err error) error {
	return cmdErr(fmt.Sprintf("%s 0x%08x", op, uint32(index)), err)
}

// cmdErr wraps a failed command: a tpmError, or the context's error when
// the call was canceled.
func cmdErr(op string, err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("antirollback: %s: %w", op, err)
	}
	return &tpmError{op: op, err: err}
}

// tpmError is a TPM command that failed. It wraps ErrTPM, ErrNVFull when
// the TPM answered TPM_RC_NV_SPACE, and the cause (a tpm2.TPMRC when the
// TPM answered, a network or device error when it did not).
type tpmError struct {
	op  string // command and its object: "NV_Write 0x01005545"
	err error
}

func (e *tpmError) full() bool { return errors.Is(e.err, tpm2.TPMRCNVSpace) }

func (e *tpmError) Error() string {
	if e.full() {
		return fmt.Sprintf("%v: %s: %v", ErrNVFull, e.op, e.err)
	}
	return fmt.Sprintf("%v: %s: %v", ErrTPM, e.op, e.err)
}

func (e *tpmError) Unwrap() []error {
	if e.full() {
		return []error{ErrTPM, ErrNVFull, e.err}
	}
	return []error{ErrTPM, e.err}
}

// public reads the index's public area. ok is false when it is not defined.
func (f *tpmFloor) public(t ctxTPM) (pub *tpm2.TPMSNVPublic, name tpm2.TPM2BName, ok bool, err error) {
	rsp, err := tpm2.NVReadPublic{NVIndex: f.index}.Execute(t)
	if errors.Is(err, tpm2.TPMRCHandle) {
		return nil, name, false, nil
	}
	if err != nil {
		return nil, name, false, tpmErr("NV_ReadPublic", f.index, err)
	}
	pub, err = rsp.NVPublic.Contents()
	if err != nil {
		return nil, name, false, tpmErr("NV_ReadPublic", f.index, err)
	}
	a := pub.Attributes
	if pub.DataSize != floorSize || a.NT != tpm2.TPMNTOrdinary || !a.OwnerWrite || !a.AuthRead || a.AuthWrite || a.PolicyWrite || a.PPWrite {
		return nil, name, false, fmt.Errorf("%w: 0x%08x has size %d, attributes 0x%08x; want size %d, an ordinary index written by the owner only",
			ErrIndexConflict, uint32(f.index), pub.DataSize, tpmaBits(a), floorSize)
	}
	return pub, rsp.NVName, true, nil
}

func (f *tpmFloor) Floor(ctx context.Context) (Version, error) {
	t := ctxTPM{ctx, f.s}
	pub, name, ok, err := f.public(t)
	if err != nil || !ok || !pub.Attributes.Written {
		return 0, err
	}
	return f.read(t, name)
}

func (f *tpmFloor) read(t ctxTPM, name tpm2.TPM2BName) (Version, error) {
	rsp, err := tpm2.NVRead{
		AuthHandle: tpm2.AuthHandle{Handle: f.index, Name: name, Auth: tpm2.PasswordAuth(nil)},
		NVIndex:    tpm2.NamedHandle{Handle: f.index, Name: name},
		Size:       floorSize,
	}.Execute(t)
	if err != nil {
		return 0, tpmErr("NV_Read", f.index, err)
	}
	if len(rsp.Data.Buffer) != floorSize {
		return 0, fmt.Errorf("%w: NV_Read 0x%08x returned %d bytes, want %d", ErrTPM, uint32(f.index), len(rsp.Data.Buffer), floorSize)
	}
	return Version(binary.BigEndian.Uint64(rsp.Data.Buffer)), nil
}

// Raise defines the index on first use, then writes v if it is above the
// floor. It reads the value back to be sure the TPM holds it.
func (f *tpmFloor) Raise(ctx context.Context, v Version) error {
	f.raiseMu.Lock()
	defer f.raiseMu.Unlock()
	t := ctxTPM{ctx, f.s}
	pub, name, ok, err := f.public(t)
	if err != nil {
		return err
	}
	if !ok {
		if name, err = f.define(t); err != nil {
			return err
		}
	} else if pub.Attributes.Written {
		cur, err := f.read(t, name)
		if err != nil {
			return err
		}
		if v <= cur {
			return nil
		}
	}
	var data [floorSize]byte
	binary.BigEndian.PutUint64(data[:], uint64(v))
	_, err = tpm2.NVWrite{
		AuthHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(f.ownerAuth)},
		NVIndex:    tpm2.NamedHandle{Handle: f.index, Name: name},
		Data:       tpm2.TPM2BMaxNVBuffer{Buffer: data[:]},
	}.Execute(t)
	if err != nil {
		return tpmErr("NV_Write", f.index, err)
	}
	// The name changes once the index is written (TPMA_NV_WRITTEN).
	if _, name, _, err = f.public(t); err != nil {
		return err
	}
	got, err := f.read(t, name)
	if err != nil {
		return err
	}
	if got != v {
		return fmt.Errorf("%w: NV 0x%08x reads %s after writing %s", ErrTPM, uint32(f.index), got, v)
	}
	return nil
}

func (f *tpmFloor) define(t ctxTPM) (tpm2.TPM2BName, error) {
	pub := tpm2.TPMSNVPublic{
		NVIndex:    f.index,
		NameAlg:    tpm2.TPMAlgSHA256,
		Attributes: floorAttrs,
		DataSize:   floorSize,
	}
	_, err := tpm2.NVDefineSpace{
		AuthHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(f.ownerAuth)},
		PublicInfo: tpm2.New2B(pub),
	}.Execute(t)
	if err != nil && !errors.Is(err, tpm2.TPMRCNVDefined) {
		return tpm2.TPM2BName{}, tpmErr("NV_DefineSpace", f.index, err)
	}
	_, name, ok, err := f.public(t)
	if err == nil && !ok {
		err = fmt.Errorf("%w: NV 0x%08x missing right after NV_DefineSpace", ErrTPM, uint32(f.index))
	}
	return name, err
}

// PCRRecord is what the engine stores beside its prefs after ExtendPCR, so
// attestation can tell which image was installed: in this boot, PCR PCR of
// bank Bank moved from Before to Expected = SHA-256(Before || ImageSHA256).
// Digests are lower-case hex.
type PCRRecord struct {
	PCR         int    `json:"pcr"`
	Bank        string `json:"bank"`
	ImageSHA256 string `json:"image_sha256"`
	Before      string `json:"before"`
	Expected    string `json:"expected"`
}

// maxPCR is the highest PCR of a PC-client TPM.
const maxPCR = 23

func (f *tpmFloor) ExtendPCR(ctx context.Context, pcr int, imageSHA256 []byte) (PCRRecord, error) {
	if pcr < 0 || pcr > maxPCR {
		return PCRRecord{}, fmt.Errorf("antirollback: PCR %d out of range 0–%d", pcr, maxPCR)
	}
	if len(imageSHA256) != sha256.Size {
		return PCRRecord{}, fmt.Errorf("antirollback: image hash is %d bytes, want a %d-byte SHA-256", len(imageSHA256), sha256.Size)
	}
	t := ctxTPM{ctx, f.s}
	before, err := readPCR(t, pcr)
	if err != nil {
		return PCRRecord{}, err
	}
	h := sha256.New()
	h.Write(before)
	h.Write(imageSHA256)
	rec := PCRRecord{
		PCR:         pcr,
		Bank:        "sha256",
		ImageSHA256: hex.EncodeToString(imageSHA256),
		Before:      hex.EncodeToString(before),
		Expected:    hex.EncodeToString(h.Sum(nil)),
	}
	_, err = tpm2.PCRExtend{
		PCRHandle: tpm2.AuthHandle{Handle: tpm2.TPMHandle(pcr), Auth: tpm2.PasswordAuth(nil)},
		Digests:   tpm2.TPMLDigestValues{Digests: []tpm2.TPMTHA{{HashAlg: tpm2.TPMAlgSHA256, Digest: imageSHA256}}},
	}.Execute(t)
	if err != nil {
		return PCRRecord{}, cmdErr(fmt.Sprintf("PCR_Extend %d", pcr), err)
	}
	after, err := readPCR(t, pcr)
	if err != nil {
		return rec, err
	}
	if !bytes.Equal(after, h.Sum(nil)) {
		return rec, fmt.Errorf("%w: PCR %d is %x, expected %s", ErrPCRMismatch, pcr, after, rec.Expected)
	}
	return rec, nil
}

// readPCR reads one PCR of the SHA-256 bank.
func readPCR(t ctxTPM, pcr int) ([]byte, error) {
	rsp, err := tpm2.PCRRead{PCRSelectionIn: tpm2.TPMLPCRSelection{PCRSelections: []tpm2.TPMSPCRSelection{{
		Hash:      tpm2.TPMAlgSHA256,
		PCRSelect: tpm2.PCClientCompatible.PCRs(uint(pcr)),
	}}}}.Execute(t)
	if err != nil {
		return nil, cmdErr(fmt.Sprintf("PCR_Read %d", pcr), err)
	}
	if len(rsp.PCRValues.Digests) != 1 || len(rsp.PCRValues.Digests[0].Buffer) != sha256.Size {
		return nil, fmt.Errorf("%w: PCR_Read %d: no SHA-256 value (is the sha256 bank allocated?)", ErrTPM, pcr)
	}
	return rsp.PCRValues.Digests[0].Buffer, nil
}

// tpmaBits renders attributes for error messages.
func tpmaBits(a tpm2.TPMANV) uint32 {
	b := tpm2.Marshal(a)
	if len(b) != 4 {
		return 0
	}
	return binary.BigEndian.Uint32(b)
}
