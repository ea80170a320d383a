//go:build race

package daemon

// raceEnabled: the race detector slows the apply several-fold, so rates
// can only be bounded from above.
const raceEnabled = true
