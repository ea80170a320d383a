// Package atomicfile replaces files so that a crash or power cut leaves
// either the old content or the new, never a mix, and a write that
// returned nil survives: a temp file in the same directory, written,
// fsynced, renamed over the target, then the directory fsynced (without
// that last step the rename itself may be lost).
//
// Why a package of its own: prefs, the engine's marker and installed
// files, the reboot manager's intent and payload_generator's published
// payload all need the same five steps; a pkg/ leaf is the one place
// they may all import. It imports only the standard library.
package atomicfile

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
)

// TempPrefix begins the name of every temp file Create makes, so the
// owner of a directory can remove what a crash left behind (prefs does,
// at Open).
const TempPrefix = ".tmp-"

// WriteFile replaces path with data, mode perm, atomically and durably.
// On failure path is unchanged and the temp file removed.
func WriteFile(path string, data []byte, perm fs.FileMode) error {
	f, err := Create(path)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		abort(f)
		return err
	}
	return Commit(f, path, perm)
}

// Create opens a new temp file beside path (TempPrefix + its base name +
// a random suffix) for the caller to write and then Commit.
func Create(path string) (*os.File, error) {
	return os.CreateTemp(filepath.Dir(path), TempPrefix+filepath.Base(path)+"-")
}

// Commit gives f, a file from Create, mode perm, fsyncs and closes it and
// renames it over path; then it fsyncs path's directory. On failure f is
// closed and removed, and path is unchanged (unless the rename itself
// succeeded and only the directory's fsync failed).
func Commit(f *os.File, path string, perm fs.FileMode) error {
	err := f.Chmod(perm)
	if err == nil {
		err = f.Sync()
	}
	if err != nil {
		abort(f)
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(f.Name())
		return err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		os.Remove(f.Name())
		return err
	}
	return SyncDir(filepath.Dir(path))
}

// Rename moves oldpath, a file already written and fsynced in the same
// directory, over newpath and fsyncs the directory. oldpath stays when
// the rename fails: its owner decides.
func Rename(oldpath, newpath string) error {
	if err := os.Rename(oldpath, newpath); err != nil {
		return err
	}
	return SyncDir(filepath.Dir(newpath))
}

// SyncDir fsyncs a directory, making the renames and removals in it
// durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	return errors.Join(d.Sync(), d.Close())
}

func abort(f *os.File) {
	f.Close()
	os.Remove(f.Name())
}
