package payload

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
)

// File-aware sources. When both images are files that debugfs (e2fsprogs)
// reads as ext4, each changed new block that belongs to a file also
// present, by path, in the old image is diffed against the matching part
// of that old file (ChromeOS's generator does the same). Content anchors
// miss many of these: on the 1 GiB bench pair, three 2 MiB operations of
// small rewritten files took 282 561, 130 195 and 159 336 B with the
// blocks the anchors chose and 14 267, 15 041 and 16 234 B against their
// files' old blocks. The changed blocks of an added file (a path the old
// image lacks) are mapped too, to be diffed as one operation apart (see
// cutJobs). Without debugfs, or when it cannot read an image,
// the anchors alone choose (the map is only a hint: every source is
// hashed into the operation, so a wrong map costs size, never
// correctness).

// fileRef places a new block in its file: the old version's blocks (nil
// for an added file), the block's index among the new version's n
// blocks, and the file's number in the map.
type fileRef struct {
	old    []uint32
	idx, n int
	file   int
}

// fileSlack is how many old blocks either side of the proportional
// position are taken (insertions and deletions shift a file's content).
const fileSlack = 16

// oldAround returns the old blocks around the position of r's new block.
func (r fileRef) oldAround() []uint32 {
	at := r.idx * len(r.old) / max(r.n, 1)
	return r.old[max(0, at-fileSlack):min(len(r.old), at+fileSlack+1)]
}

// imagePath is the path debugfs can open for an image: its file name when
// it is an *os.File, else "".
func imagePath(r any) string {
	if f, ok := r.(*os.File); ok {
		return f.Name()
	}
	return ""
}

// fileMap maps the given new blocks to their files (see fileRef). Without
// a map (nil) the anchors alone choose; the error says why there is none.
func (g *deltaGen) fileMap(ctx context.Context, blocks []uint32) (map[uint32]fileRef, error) {
	if len(blocks) == 0 {
		return nil, nil
	}
	oldPath, newPath := imagePath(g.o.Old), imagePath(g.o.New)
	if oldPath == "" || newPath == "" {
		return nil, errors.New("payload: the images are not files: no file-aware sources")
	}
	if _, err := exec.LookPath("debugfs"); err != nil {
		return nil, fmt.Errorf("payload: no file-aware sources: %w", err)
	}
	return buildFileMap(ctx, oldPath, newPath, blocks)
}

func buildFileMap(ctx context.Context, oldPath, newPath string, blocks []uint32) (map[uint32]fileRef, error) {
	inodeOf, inodes := blockInodes(ctx, newPath, blocks)
	if len(inodeOf) == 0 {
		return nil, fmt.Errorf("payload: debugfs icheck of %s found no files", newPath)
	}
	paths := inodePaths(ctx, newPath, inodes)
	var names, inos []string
	for _, ino := range slices.Sorted(maps.Keys(paths)) {
		inos = append(inos, ino)
		names = append(names, paths[ino])
	}
	oldBlocks, err := debugfsBlocks(ctx, oldPath, names)
	if err != nil {
		return nil, err
	}
	newBlocks, err := debugfsBlocks(ctx, newPath, inodeSpecs(inos))
	if err != nil {
		return nil, err
	}
	// Each changed block of a file, placed in its file.
	m := map[uint32]fileRef{}
	for i := range inos {
		for idx, b := range newBlocks[i] {
			if _, changed := inodeOf[b]; changed {
				m[b] = fileRef{old: oldBlocks[i], idx: idx, n: len(newBlocks[i]), file: i}
			}
		}
	}
	return m, nil
}

// blockInodes maps blocks of img to the inodes that hold them (debugfs
// icheck) and lists those inodes.
func blockInodes(ctx context.Context, img string, blocks []uint32) (map[uint32]string, []string) {
	args := make([]string, len(blocks))
	for i, b := range blocks {
		args[i] = strconv.FormatUint(uint64(b), 10)
	}
	inodeOf := map[uint32]string{}
	var inodes []string
	for _, l := range debugfsLines(ctx, img, "icheck", args) {
		f := strings.Fields(l)
		if len(f) != 2 {
			continue
		}
		b, err := strconv.ParseUint(f[0], 10, 32)
		if _, ierr := strconv.ParseUint(f[1], 10, 32); err != nil || ierr != nil {
			continue
		}
		if _, seen := inodeOf[uint32(b)]; !seen {
			inodeOf[uint32(b)] = f[1]
			inodes = append(inodes, f[1])
		}
	}
	return inodeOf, inodes
}

func inodeSpecs(inos []string) []string {
	s := make([]string, len(inos))
	for i, ino := range inos {
		s[i] = "<" + ino + ">"
	}
	return s
}

// inodePaths maps inodes to one path each (regular files only: debugfs
// ncheck also names directories; their blocks list fails harmlessly).
func inodePaths(ctx context.Context, img string, inodes []string) map[string]string {
	seen := map[string]bool{}
	var uniq []string
	for _, ino := range inodes {
		if !seen[ino] {
			seen[ino] = true
			uniq = append(uniq, ino)
		}
	}
	paths := map[string]string{}
	for _, l := range debugfsLines(ctx, img, "ncheck", uniq) {
		ino, p, ok := strings.Cut(l, "\t")
		if !ok || strings.ContainsAny(p, "\"\n") || !strings.HasPrefix(p, "/") {
			continue
		}
		if _, dup := paths[ino]; !dup && seen[ino] {
			paths[ino] = p
		}
	}
	return paths
}

// debugfsBlocks returns the data blocks of each file spec (a path or
// <inode>) in img, nil for a spec debugfs cannot resolve.
func debugfsBlocks(ctx context.Context, img string, specs []string) ([][]uint32, error) {
	cmds := make([]string, len(specs))
	for i, s := range specs {
		cmds[i] = `blocks "` + s + `"`
	}
	outs, err := debugfsCmds(ctx, img, cmds)
	if err != nil {
		return nil, err
	}
	res := make([][]uint32, len(specs))
	for i, out := range outs {
		for _, f := range strings.Fields(out) {
			b, err := strconv.ParseUint(f, 10, 32)
			if err != nil {
				break
			}
			res[i] = append(res[i], uint32(b))
		}
	}
	return res, nil
}

// debugfsLines runs "cmd arg..." on img with at most 512 args a line (a
// debugfs line is bounded) and returns the output lines (nil on error).
func debugfsLines(ctx context.Context, img, cmd string, args []string) []string {
	var cmds []string
	for i := 0; i < len(args); i += 512 {
		cmds = append(cmds, cmd+" "+strings.Join(args[i:min(i+512, len(args))], " "))
	}
	outs, err := debugfsCmds(ctx, img, cmds)
	if err != nil {
		return nil
	}
	var lines []string
	for _, o := range outs {
		lines = append(lines, strings.Split(o, "\n")...)
	}
	return lines
}

// debugfsCmds runs cmds (one a line) with debugfs, read-only, on img and
// returns each command's output: what follows its echoed line.
func debugfsCmds(ctx context.Context, img string, cmds []string) ([]string, error) {
	cmd := exec.CommandContext(ctx, "debugfs", "-f", "-", img)
	cmd.Stdin = strings.NewReader(strings.Join(cmds, "\n") + "\n")
	var out bytes.Buffer
	cmd.Stdout = &out
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("payload: debugfs %s: %w", img, err)
	}
	parts := strings.Split(out.String(), "debugfs: ")
	if len(parts) != len(cmds)+1 {
		return nil, fmt.Errorf("payload: debugfs %s: %d answers to %d commands", img, len(parts)-1, len(cmds))
	}
	res := make([]string, len(cmds))
	for i, p := range parts[1:] {
		_, res[i], _ = strings.Cut(p, "\n")
	}
	return res, nil
}
