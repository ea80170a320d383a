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
//   - a package has no package doc comment,
//   - a binary under cmd/ links testing or net/http/httptest, or a package
//     in its full dependency list (go list -deps) other than
//     internal/metrics imports Prometheus, or
//   - the com.coreos.update1 names or a status string
//     ("UPDATE_STATUS_IDLE", …) appear as a string literal in non-test
//     code outside pkg/update1, their one definition (nor the default
//     Omaha server outside pkg/omaha).
//
// The package rules read the source tree with go/build (imports and doc
// comments only) and the literal rule with go/parser, so they need no
// build; the binary rule runs go list (skipped with -short, or without a
// go command). Each names every offending package, import or literal.
package deptest
