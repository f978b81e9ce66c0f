/**
 * Device functions: the one place where users extend the ingest with their own code. A {@link
 * io.devicegateway.function.DeviceFunction} is a CDI bean; the gateway runs every enabled one, in a declared order, on
 * each device message it applies to (README: Device functions). Nothing here depends on Kafka, MQTT or the channels.
 */
package io.devicegateway.function;
