// Package gen is the root of the generated Go code for securemsg's protobuf contracts
// (proto/securemsg/...): the message types and gRPC stubs under securemsg/, and under openapi/
// the OpenAPI v3 document of each service's REST routes (google.api.http), embedded for the HTTP
// edge to serve. Everything below it is written by `make generate`; never edit it by hand.
package gen
