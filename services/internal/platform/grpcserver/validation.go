package grpcserver

import (
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/validator"
	"google.golang.org/grpc"
)

// Validation: a request message with a Validate() error method (or protoc-gen-validate's
// ValidateAll) is checked before the handler; for streams, every received message is. A failure
// becomes InvalidArgument carrying the error's text, so Validate must describe the rule broken
// ("thread_id must be a UUID"), never echo the field's value — it may be PHI. Messages without
// a Validate method pass untouched.

func unaryValidation() grpc.UnaryServerInterceptor { return validator.UnaryServerInterceptor() }

func streamValidation() grpc.StreamServerInterceptor { return validator.StreamServerInterceptor() }
