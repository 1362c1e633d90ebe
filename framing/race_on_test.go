//go:build race

package framing

// raceEnabled: the race detector's runtime allocates more than the shipped
// build, so allocation bounds are checked only without it.
const raceEnabled = true
