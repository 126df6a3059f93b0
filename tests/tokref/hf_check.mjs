// Checks the fixtures themselves: @huggingface/tokenizers (Hugging Face's JS implementation of
// tokenizer.json) run on each generated tokenizer.json must reproduce the package reference ids
// on every corpus.txt entry (texts named c*). Catches a tokenizer.json that does not describe
// the reference tokenizer.
//
//   node hf_check.mjs FIXTURE_DIR MODEL...
//
// Prints failures, a line per model and "N passed, M failed"; exits 1 on any failure.
import fs from 'node:fs';
import path from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';

const [fix, ...models] = process.argv.slice(2);
const texts = fs.readFileSync(path.join(fix, 'manifest.tsv'), 'utf8').split('\n').filter((l) => l.startsWith('c'))
    .map((l) => l.split('\t'));
let pass = 0, fail = 0;
for (const m of models) {
    const read = (f) => JSON.parse(fs.readFileSync(path.join(fix, m, f), 'utf8'));
    const tok = new Tokenizer(read('tokenizer.json'), read('tokenizer_config.json'));
    let ok = 0;
    const byteLevel = read('tokenizer.json').decoder.type === 'ByteLevel';
    let skipped = 0;
    for (const [name, file] of texts) {
        const text = fs.readFileSync(file, 'utf8');
        if (byteLevel && /[\u0085\ufeff]/.test(text)) {
            skipped++; // its regexes use JavaScript's \s, which is not White_Space there (see build_fixtures.mjs)
            continue;
        }
        const ids = tok.encode(text, { add_special_tokens: false }).ids;
        const ref = fs.readFileSync(path.join(fix, m, name + '.ids'), 'utf8').trim();
        if (ids.join(' ') === ref) {
            ok++;
            pass++;
        } else {
            fail++;
            const r = ref ? ref.split(' ').map(Number) : [];
            let i = 0;
            while (i < r.length && r[i] === ids[i]) i++;
            console.log(`FAIL fixture ${m} ${name}: @huggingface/tokenizers differs from the reference at ${i}: ` +
                `[${r.slice(i, i + 5)}] vs [${ids.slice(i, i + 5)}]`);
        }
    }
    console.log(`${m}: fixture check (@huggingface/tokenizers = reference) ${ok}/${texts.length - skipped} corpus texts` +
        (skipped ? ` (${skipped} with U+0085/U+FEFF not checked)` : ''));
}
console.log(`${pass} passed, ${fail} failed`);
process.exit(fail ? 1 : 0);
