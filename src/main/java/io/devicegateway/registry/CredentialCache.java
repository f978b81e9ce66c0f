package io.devicegateway.registry;

import java.nio.charset.StandardCharsets;
import java.security.GeneralSecurityException;
import java.security.MessageDigest;
import java.security.SecureRandom;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;

import javax.crypto.Mac;
import javax.crypto.spec.SecretKeySpec;

import jakarta.inject.Singleton;

/**
 * Credentials the auth hook verified, so the slow hash runs once per device and password, not on every broker call.
 * Holds per device the stored hash it was verified against and an HMAC-SHA256 of the password under a random key
 * made at startup (never the password; the HMAC is useless outside this process). A hit needs both: the same
 * password and the same stored hash, which the hook reads from Redis on every call, so a rotation, a disable or a
 * delete on any instance takes effect at once; this instance's own changes also drop the entry. Bounded: when full
 * it is emptied (entries are re-verified on their next use).
 */
@Singleton
public class CredentialCache {

    private record Entry(String storedHash, byte[] passwordMac) {
    }

    private final byte[] key = new byte[32];
    private final Map<String, Entry> verified = new ConcurrentHashMap<>();
    private final int maxEntries;
    private final ThreadLocal<Mac> macs;

    CredentialCache(RegistryConfig config) {
        new SecureRandom().nextBytes(key);
        this.maxEntries = Math.max(1, config.authHook().cacheSize());
        this.macs = ThreadLocal.withInitial(() -> {
            try {
                Mac mac = Mac.getInstance("HmacSHA256");
                mac.init(new SecretKeySpec(key, "HmacSHA256"));
                return mac;
            } catch (GeneralSecurityException e) {
                throw new IllegalStateException("HmacSHA256 unavailable", e);
            }
        });
    }

    byte[] mac(String password) {
        return macs.get().doFinal(password.getBytes(StandardCharsets.UTF_8));
    }

    /** Whether this password was verified against exactly this stored hash. */
    boolean isVerified(String deviceId, String storedHash, byte[] passwordMac) {
        Entry e = verified.get(deviceId);
        return e != null && e.storedHash().equals(storedHash) && MessageDigest.isEqual(e.passwordMac(), passwordMac);
    }

    void remember(String deviceId, String storedHash, byte[] passwordMac) {
        if (verified.size() >= maxEntries) {
            verified.clear();
        }
        verified.put(deviceId, new Entry(storedHash, passwordMac));
    }

    /** Rotate, disable, delete on this instance. */
    public void invalidate(String deviceId) {
        verified.remove(deviceId);
    }

    int size() {
        return verified.size();
    }
}
