// Writes a tiny Llama model as a Hugging Face folder (config.json + model.safetensors, F32, dim 8,
// one layer, tied embeddings) for tokenizer round trips through `prunequant convert`. The weights
// are small deterministic values; only their shapes matter. Given a tokenizer.json, the vocabulary
// size is its largest id + 1 and it is copied into the folder with the tokenizer_config.json beside it.
//
//   node tiny_model.mjs OUT_DIR (VOCAB_SIZE | TOKENIZER_JSON) [BOS_ID EOS_ID]
import fs from 'node:fs';
import path from 'node:path';

const [out, vocabArg, bosArg, eosArg] = process.argv.slice(2);
let vocab = Number(vocabArg);
let tokenizer = null;
if (vocabArg && !(vocab > 0)) {
    tokenizer = vocabArg;
    const j = JSON.parse(fs.readFileSync(tokenizer, 'utf8'));
    vocab = 0;
    for (const id of Object.values(j.model.vocab)) vocab = Math.max(vocab, id + 1);
    for (const a of j.added_tokens || []) vocab = Math.max(vocab, a.id + 1);
}
if (!out || !(vocab > 0)) {
    console.error('usage: node tiny_model.mjs OUT_DIR (VOCAB_SIZE | TOKENIZER_JSON) [BOS_ID EOS_ID]');
    process.exit(2);
}
const dim = 8, hidden = 16;
fs.mkdirSync(out, { recursive: true });
const config = {
    architectures: ['LlamaForCausalLM'], model_type: 'llama', hidden_size: dim, intermediate_size: hidden,
    num_hidden_layers: 1, num_attention_heads: 2, num_key_value_heads: 2, vocab_size: vocab,
    max_position_embeddings: 256, rms_norm_eps: 1e-5, rope_theta: 10000, hidden_act: 'silu',
    tie_word_embeddings: true, torch_dtype: 'float32',
};
if (bosArg !== undefined) config.bos_token_id = Number(bosArg);
if (eosArg !== undefined) config.eos_token_id = Number(eosArg);
fs.writeFileSync(path.join(out, 'config.json'), JSON.stringify(config, null, 2));
if (tokenizer) {
    fs.copyFileSync(tokenizer, path.join(out, 'tokenizer.json'));
    const cfg = path.join(path.dirname(tokenizer), 'tokenizer_config.json');
    if (fs.existsSync(cfg)) fs.copyFileSync(cfg, path.join(out, 'tokenizer_config.json'));
}

const tensors = [['model.embed_tokens.weight', [vocab, dim]], ['model.norm.weight', [dim]],
    ['model.layers.0.input_layernorm.weight', [dim]], ['model.layers.0.post_attention_layernorm.weight', [dim]]];
for (const p of ['q', 'k', 'v', 'o']) tensors.push([`model.layers.0.self_attn.${p}_proj.weight`, [dim, dim]]);
tensors.push(['model.layers.0.mlp.gate_proj.weight', [hidden, dim]], ['model.layers.0.mlp.up_proj.weight', [hidden, dim]],
    ['model.layers.0.mlp.down_proj.weight', [dim, hidden]]);
const header = { __metadata__: { format: 'pt' } };
let off = 0;
for (const [name, shape] of tensors) {
    const n = shape.reduce((a, b) => a * b, 1) * 4;
    header[name] = { dtype: 'F32', shape, data_offsets: [off, off + n] };
    off += n;
}
let hjson = JSON.stringify(header);
while ((8 + Buffer.byteLength(hjson)) % 8) hjson += ' ';
const hbuf = Buffer.from(hjson);
const data = new Float32Array(off / 4);
for (let i = 0; i < data.length; i++) data[i] = (((i * 2654435761) >>> 0) % 2001 - 1000) / 20000;
const len = Buffer.alloc(8);
len.writeBigUInt64LE(BigInt(hbuf.length));
fs.writeFileSync(path.join(out, 'model.safetensors'), Buffer.concat([len, hbuf, Buffer.from(data.buffer)]));
