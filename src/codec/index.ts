export { AesGcmCodec, CodecError, ENCODING, KEY_ID_METADATA, NoKeysCodec, isEncrypted } from './aes-gcm';
export { CodecConfigError, KEY_ID_VAR, KEYS_VAR, parseCodecKeys, type CodecKeys } from './keys';
export { codecKeysFile, codecKeysFromEnv, dataConverterFromEnv, ensureStackCodecKeys, type FoundKeys } from './env';
