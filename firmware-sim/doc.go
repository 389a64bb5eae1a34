// Command firmware-sim plays a fleet of MQTT sensors against any broker
// (Outpost, mochi, mosquitto) and checks what arrived.
//
//	firmware-sim [flags]          run a fleet (flags, or -scenario FILE)
//	firmware-sim verify [flags]   check per-device sequence numbers for gaps and duplicates
//
// Exit status: 0 success, 1 runtime error, 2 bad usage, 3 acknowledgements
// missing at the end of a run, 4 verify found gaps or duplicates.
package main
