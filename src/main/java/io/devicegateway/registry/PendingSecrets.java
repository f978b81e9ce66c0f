package io.devicegateway.registry;

import java.nio.charset.StandardCharsets;
import java.security.GeneralSecurityException;
import java.security.SecureRandom;
import java.util.Base64;

import javax.crypto.Cipher;
import javax.crypto.spec.GCMParameterSpec;
import javax.crypto.spec.SecretKeySpec;

/**
 * A password the broker has not yet confirmed, kept in Redis encrypted with AES-256-GCM under a key from
 * configuration ({@code gateway.registry.mosquitto-dynsec.pending-key}), bound to its device id (additional
 * authenticated data), so a copy moved to another device's record does not decrypt. Stored as
 * {@code v1:<iv b64>:<ciphertext+tag b64>}, and deleted once the broker acknowledged the password.
 */
final class PendingSecrets {

    private static final SecureRandom RANDOM = new SecureRandom();
    private final SecretKeySpec key;

    private PendingSecrets(byte[] key) {
        this.key = new SecretKeySpec(key, "AES");
    }

    /** @throws IllegalArgumentException naming the key (never its value) when it is not base64 of 32 bytes */
    static PendingSecrets fromBase64(String base64) {
        byte[] key;
        try {
            key = Base64.getDecoder().decode(base64.trim());
        } catch (IllegalArgumentException e) {
            throw new IllegalArgumentException("gateway.registry.mosquitto-dynsec.pending-key is not valid base64");
        }
        if (key.length != 32) {
            throw new IllegalArgumentException("gateway.registry.mosquitto-dynsec.pending-key must be 32 bytes "
                    + "(base64 of an AES-256 key, e.g. `openssl rand -base64 32`), not " + key.length);
        }
        return new PendingSecrets(key);
    }

    String seal(String deviceId, String password) {
        byte[] iv = new byte[12];
        RANDOM.nextBytes(iv);
        try {
            Cipher cipher = Cipher.getInstance("AES/GCM/NoPadding");
            cipher.init(Cipher.ENCRYPT_MODE, key, new GCMParameterSpec(128, iv));
            cipher.updateAAD(deviceId.getBytes(StandardCharsets.UTF_8));
            byte[] sealed = cipher.doFinal(password.getBytes(StandardCharsets.UTF_8));
            return "v1:" + Base64.getEncoder().encodeToString(iv) + ":" + Base64.getEncoder().encodeToString(sealed);
        } catch (GeneralSecurityException e) {
            throw new IllegalStateException("AES-GCM unavailable", e);
        }
    }

    /** The password, or null when the value is malformed or was sealed under another key or for another device. */
    String open(String deviceId, String value) {
        if (value == null) {
            return null;
        }
        String[] parts = value.split(":");
        if (parts.length != 3 || !parts[0].equals("v1")) {
            return null;
        }
        try {
            Cipher cipher = Cipher.getInstance("AES/GCM/NoPadding");
            cipher.init(Cipher.DECRYPT_MODE, key, new GCMParameterSpec(128, Base64.getDecoder().decode(parts[1])));
            cipher.updateAAD(deviceId.getBytes(StandardCharsets.UTF_8));
            return new String(cipher.doFinal(Base64.getDecoder().decode(parts[2])), StandardCharsets.UTF_8);
        } catch (GeneralSecurityException | IllegalArgumentException e) {
            return null;
        }
    }
}
