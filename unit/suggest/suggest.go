// Package suggest finds the word a typo was probably meant to be, for
// "did you mean" hints. It never changes what it is given.
package suggest

import "strings"

// maxLen bounds the words compared, so that a hostile key costs little.
const maxLen = 64

// Closest returns the candidate nearest to s, if it is near enough to be a
// typo of it: at most two edits, or a third of the length of s. Case and the
// difference between - and _ are not edits. The first of equally near
// candidates wins.
func Closest(s string, candidates []string) (string, bool) {
	if len(s) > maxLen {
		return "", false
	}
	best, bestD := "", maxLen+1
	ns := fold(s)
	for _, c := range candidates {
		if len(c) > maxLen {
			continue
		}
		if d := distance(ns, fold(c)); d < bestD {
			best, bestD = c, d
		}
	}
	return best, best != "" && bestD <= max(2, len(s)/3)
}

// Same reports whether a and b are the same word but for case and the
// difference between - and _.
func Same(a, b string) bool { return fold(a) == fold(b) }

func fold(s string) string { return strings.ReplaceAll(strings.ToLower(s), "-", "_") }

// distance is the optimal string alignment distance between a and b, in
// bytes: insertions, deletions, substitutions and swaps of two neighbours
// each count one, so "exce" is one edit from "exec".
func distance(a, b string) int {
	prev2 := make([]int, len(b)+1)
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(b)]
}
