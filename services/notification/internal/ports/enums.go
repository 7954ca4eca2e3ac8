package ports

import "github.com/securemsg/securemsg/services/internal/platform/protoenum"

// noCode is the domain code of a proto enum value no int16 holds: it is no channel, kind or
// status at all, so as a filter it matches nothing and as a template's key it fails the lint.
const noCode = -1

// code16 narrows a proto enum value (int32 on the wire) to the domain's int16 code, or noCode
// when it is out of range, rather than letting a conversion wrap it onto a real code.
func code16[E ~int32](v E) int16 { return protoenum.Code(v, noCode) }
