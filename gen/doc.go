// Package gen is the root of the generated Go code for securemsg's protobuf contracts
// (proto/securemsg/...). Everything below it is written by `make generate`; never edit it by hand.
package gen
