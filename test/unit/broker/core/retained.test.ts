import { MemoryRetainedStore } from '@topicast/broker';
import { retainedContract } from './retained-contract.js';

retainedContract('MemoryRetainedStore', () => new MemoryRetainedStore());
