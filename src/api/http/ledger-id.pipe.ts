import { Injectable, type ArgumentMetadata, type PipeTransform } from '@nestjs/common';
import { ValidationFailed } from '../../ledger/errors';
import { isIdentifier } from '../../ledger/identifiers';
import { LEDGER_ID_MESSAGE } from './validators';

/** Path parameters are identifiers too: checked before they can reach a stream name. */
@Injectable()
export class LedgerIdPipe implements PipeTransform<unknown, string> {
  transform(value: unknown, metadata: ArgumentMetadata): string {
    if (!isIdentifier(value)) {
      throw new ValidationFailed([{ field: metadata.data ?? 'path', message: LEDGER_ID_MESSAGE }]);
    }
    return value;
  }
}
