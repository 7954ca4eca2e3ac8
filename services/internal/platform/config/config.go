// Package config loads a service's settings from SECUREMSG_* environment variables into a typed
// struct and validates them, reporting every problem at once.
//
// It is the only package in the repository that reads the environment (STYLE.md: no os.Getenv
// outside config). Parsing is done by github.com/caarlos0/env/v11: it has no dependencies of its
// own, understands nested structs, durations, slices, encoding.TextUnmarshaler (so slog.Level
// parses as "debug"/"info"/...) and already aggregates every parse error instead of stopping at
// the first. Validation is ours: each section below has a Validate method and Load calls every
// Validate it finds, joining the results with errors.Join.
//
// A service composes its own struct from the sections:
//
//	type Config struct {
//		Server     config.Server
//		Log        config.Log
//		Postgres   config.Postgres
//		NATS       config.NATS
//		Vault      config.Vault
//		OIDC       config.OIDC
//		Attachment config.Client `envPrefix:"ATTACHMENT_"` // SECUREMSG_ATTACHMENT_ADDR, ...
//	}
//
//	var cfg Config
//	err := config.Load(&cfg, config.WithDefault("SECUREMSG_GRPC_ADDR", "127.0.0.1:7001"))
//
// Error messages name the variable and never echo the value of a secret (tokens, database URLs).
package config

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"strings"

	"github.com/caarlos0/env/v11"
)

// Prefix is put in front of every variable name this package reads.
const Prefix = "SECUREMSG_"

// Validator is implemented by configuration sections (and by a service's own Config, if it wants
// cross-section rules). Validate returns every problem it finds, joined with errors.Join.
type Validator interface {
	Validate() error
}

// Option changes how Load reads the environment.
type Option func(*loadOptions)

type loadOptions struct {
	environ  map[string]string
	defaults map[string]string
}

// WithDefault sets the value a variable takes when it is unset or empty, overriding its
// envDefault tag; a service uses it for what differs between services (its listen port, say):
//
//	config.Load(&cfg, config.WithDefault("SECUREMSG_GRPC_ADDR", "127.0.0.1:7001"))
func WithDefault(name, value string) Option {
	return func(o *loadOptions) { o.defaults[name] = value }
}

// WithEnvironment replaces the process environment (keys are full variable names, prefix
// included; nil means the process environment); tests use it so they need not mutate the
// process environment.
func WithEnvironment(environ map[string]string) Option {
	return func(o *loadOptions) { o.environ = environ }
}

// Load fills cfg, a pointer to a struct, from the process environment and validates it (see
// ValidateAll). The returned error joins every parse and validation problem, one per line.
func Load(cfg any, opts ...Option) error {
	o := loadOptions{defaults: map[string]string{}}
	for _, opt := range opts {
		opt(&o)
	}
	if o.environ == nil {
		o.environ = env.ToMap(os.Environ())
	}
	rv := reflect.ValueOf(cfg)
	if rv.Kind() != reflect.Pointer || rv.IsNil() || rv.Elem().Kind() != reflect.Struct {
		return fmt.Errorf("config: Load needs a non-nil pointer to a struct, got %T", cfg)
	}
	environ := make(map[string]string, len(o.environ)+len(o.defaults))
	for k, v := range o.environ {
		environ[k] = v
	}
	for k, v := range o.defaults {
		if environ[k] == "" {
			environ[k] = v
		}
	}
	parseErr := env.ParseWithOptions(cfg, env.Options{Environment: environ, Prefix: Prefix})
	var errs []error
	if parseErr != nil {
		var agg env.AggregateError
		if !errors.As(parseErr, &agg) {
			agg.Errors = []error{parseErr}
		}
		keys := map[string][]string{}
		fieldKeys(rv.Elem().Type(), Prefix, keys)
		for _, err := range agg.Errors {
			errs = append(errs, nameVariable(err, keys))
		}
	}
	errs = append(errs, ValidateAll(cfg))
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("config: invalid environment:\n%w", err)
	}
	return nil
}

// nameVariable rewrites the library's "parse error on field X" into the variable's name, which
// is what an operator can act on.
func nameVariable(err error, keys map[string][]string) error {
	var pe env.ParseError
	if !errors.As(err, &pe) || len(keys[pe.Name]) == 0 {
		return err
	}
	return fmt.Errorf("%s: cannot parse as %s: %w", strings.Join(keys[pe.Name], " or "), pe.Type, pe.Err)
}

// fieldKeys maps Go field names to the variable names they are read from.
func fieldKeys(t reflect.Type, prefix string, out map[string][]string) {
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		if key, _, _ := strings.Cut(f.Tag.Get("env"), ","); key != "" {
			out[f.Name] = append(out[f.Name], prefix+key)
			continue
		}
		ft := f.Type
		if ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		if ft.Kind() == reflect.Struct {
			fieldKeys(ft, prefix+f.Tag.Get("envPrefix"), out)
		}
	}
}

// ValidateAll calls Validate on v (when it is a Validator) and on every struct field, at any
// depth, that is one, joining all the errors. A type's own Validate is responsible for its
// fields, so ValidateAll does not descend into a Validator.
func ValidateAll(v any) error {
	return validateValue(reflect.ValueOf(v))
}

var validatorType = reflect.TypeFor[Validator]()

func validateValue(rv reflect.Value) error {
	if !rv.IsValid() {
		return nil
	}
	if rv.Kind() == reflect.Pointer {
		if rv.IsNil() {
			return nil
		}
		if rv.Type().Implements(validatorType) {
			return rv.Interface().(Validator).Validate()
		}
		rv = rv.Elem()
	}
	if rv.Type().Implements(validatorType) {
		return rv.Interface().(Validator).Validate()
	}
	if rv.CanAddr() && rv.Addr().Type().Implements(validatorType) {
		return rv.Addr().Interface().(Validator).Validate()
	}
	if rv.Kind() != reflect.Struct {
		return nil
	}
	var errs []error
	for i := range rv.NumField() {
		field := rv.Type().Field(i)
		if !field.IsExported() {
			continue
		}
		// Name the section in each message: two Client sections share messages otherwise.
		for _, err := range flatten(validateValue(rv.Field(i))) {
			errs = append(errs, fmt.Errorf("%s: %w", field.Name, err))
		}
	}
	return errors.Join(errs...)
}

// flatten undoes errors.Join one level so every problem gets its own prefixed line.
func flatten(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, flatten(e)...)
		}
		return out
	}
	return []error{err}
}

// problems collects validation messages for one section; each message names the variable.
type problems []error

func (p *problems) addf(format string, args ...any) {
	*p = append(*p, fmt.Errorf(format, args...))
}

func (p problems) err() error { return errors.Join(p...) }
