package httpedge

import (
	"net/http"
	"strings"

	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
)

// phiFieldNames lists the names (proto and JSON spellings) of every request field of the
// routed services that the protos mark debug_redact: the fields that carry PHI or personal
// data. The REST transcoder fills any request field from a query parameter of the same name,
// even on POST routes, so without this a client could put a message body or a break-glass
// reason in a URL, where proxies, access logs and browser history keep it.
func phiFieldNames(services []string) map[string]bool {
	names := map[string]bool{}
	seen := map[protoreflect.FullName]bool{}
	for _, name := range services {
		d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(name))
		if err != nil {
			continue
		}
		sd, ok := d.(protoreflect.ServiceDescriptor)
		if !ok {
			continue
		}
		for i := range sd.Methods().Len() {
			collectRedacted(sd.Methods().Get(i).Input(), names, seen)
		}
	}
	return names
}

func collectRedacted(md protoreflect.MessageDescriptor, names map[string]bool, seen map[protoreflect.FullName]bool) {
	if seen[md.FullName()] {
		return
	}
	seen[md.FullName()] = true
	for i := range md.Fields().Len() {
		fd := md.Fields().Get(i)
		if opts, ok := fd.Options().(*descriptorpb.FieldOptions); ok && opts.GetDebugRedact() {
			names[string(fd.Name())] = true
			names[fd.JSONName()] = true
		}
		if fd.Message() != nil {
			collectRedacted(fd.Message(), names, seen)
		}
	}
}

// refusePHIInQuery refuses, before anything runs, a request whose query string names a PHI
// field (in any segment of a dotted field path), and never echoes the value.
func refusePHIInQuery(phi map[string]bool, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.RawQuery != "" {
			for key := range r.URL.Query() {
				for _, segment := range strings.Split(key, ".") {
					if phi[segment] {
						refuse(w, r, http.StatusBadRequest, "phi_in_query", "field "+segment+" carries protected data and is accepted only in the request body")
						return
					}
				}
			}
		}
		next.ServeHTTP(w, r)
	})
}
