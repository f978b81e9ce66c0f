package io.devicegateway.session;

/** CDI event: the session store recorded that a device came online (fired on the store's event loop). */
public record DeviceOnline(String deviceId) {
}
