// Package deptest holds no code: its test guards the architecture of the
// whole module (DESIGN.md). It fails when
//
//   - a package under pkg/ imports a package under internal/ in its non-test
//     files (pkg/ packages are leaves that know nothing of the engine;
//     their _test.go files may use internal/testenv),
//   - a package's non-test files import internal/testenv (only tests and
//     the tools under internal/testenv/ may),
//   - any package other than internal/metrics imports
//     github.com/prometheus/... (test files included), or
//   - a package has no package doc comment.
//
// It reads the source tree with go/build (imports and doc comments only),
// so it needs neither a build nor a complete go.sum, and names every
// offending package and import.
package deptest
