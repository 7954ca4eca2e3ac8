// Package protoenum narrows proto enum values (int32 on the wire) to the smallint codes the
// services store and match. Every declared value of the suite's enums is far below 2^15, so the
// narrowing is exact for them; a value no int16 holds is no declared value at all (proto3 keeps
// unknown numbers), and must never wrap onto a real code — in an audit log least of all.
package protoenum

import "math"

// Code is e as an int16 code, or fallback when no int16 holds it.
func Code[E ~int32](e E, fallback int16) int16 {
	if e < math.MinInt16 || e > math.MaxInt16 {
		return fallback
	}
	return int16(e)
}
