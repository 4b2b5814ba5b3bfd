import { ApiProperty } from '@nestjs/swagger';
import { IsIn, IsInt, IsOptional, Max, Min, ValidateIf } from 'class-validator';
import { GRANT_SOURCES, type GrantSource } from '../../../ledger/organization/events';
import { MAX_TTL_SECONDS } from '../../../ledger/organization/decide';
import { IsCreditAmount, IsIsoDateTime, IsLedgerId } from '../validators';

export const MAX_PRIORITY = 1_000_000;

export class GrantCreditsDto {
  @IsLedgerId()
  grantId!: string;

  @IsCreditAmount()
  amount!: number;

  @IsIn(GRANT_SOURCES)
  @ApiProperty({ enum: GRANT_SOURCES })
  source!: GrantSource;

  @IsOptional()
  @IsInt()
  @Min(0)
  @Max(MAX_PRIORITY)
  @ApiProperty({
    type: 'integer',
    minimum: 0,
    maximum: MAX_PRIORITY,
    required: false,
    default: 100,
  })
  priority?: number;

  // null means "never expires", as leaving it out does.
  @ValidateIf((_, value) => value !== null)
  @IsIsoDateTime({ optional: true })
  expiresAt?: string | null;
}

export class ChargeCharmRunDto {
  @IsLedgerId()
  runId!: string;

  @IsLedgerId()
  charmId!: string;

  @IsLedgerId()
  userId!: string;

  @IsCreditAmount()
  amount!: number;

  @IsLedgerId({ optional: true, description: "default: the user's active organization" })
  organizationId?: string;
}

export class RefundCharmRunDto {
  @IsCreditAmount({ optional: true, description: 'default: all that is left to refund' })
  amount?: number;

  @IsLedgerId({ optional: true, description: 'makes a repeated refund request harmless' })
  refundId?: string;
}

export class ReserveCreditsDto {
  @IsLedgerId()
  reservationId!: string;

  @IsLedgerId()
  charmId!: string;

  @IsLedgerId()
  userId!: string;

  @IsCreditAmount()
  amount!: number;

  @IsOptional()
  @IsInt()
  @Min(1)
  @Max(MAX_TTL_SECONDS)
  @ApiProperty({
    type: 'integer',
    minimum: 1,
    maximum: MAX_TTL_SECONDS,
    required: false,
    default: 900,
  })
  ttlSeconds?: number;
}

export class CaptureReservationDto {
  @IsCreditAmount()
  amount!: number;

  @IsLedgerId({ optional: true, description: 'default: the reservation id' })
  runId?: string;
}

/** Release takes no fields; the class still refuses unknown ones. */
export class ReleaseReservationDto {}

export class TransferCreditsDto {
  @IsLedgerId()
  transferId!: string;

  @IsLedgerId()
  toOrganizationId!: string;

  @IsCreditAmount()
  amount!: number;
}
