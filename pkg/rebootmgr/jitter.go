package rebootmgr

import "math/rand/v2"

// jitter is the production random source for Backoff.
func jitter() float64 { return rand.Float64() }
