package apikey

// Version is the plugin's semantic version, reported to Vault as RunningVersion and used
// with `vault plugin register -version`.
const Version = "v0.1.0"
