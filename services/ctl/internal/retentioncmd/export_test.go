package retentioncmd

// PrintPolicy exposes printPolicy to the package's external tests.
var PrintPolicy = printPolicy
